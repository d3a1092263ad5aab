"""The overlay2 graph driver: kernel overlayfs in moby's overlay2 layout.

Each layer's own files live in ``<id>/diff``, which is the upper directory of
its mount, so the layer's diff is a walk of that directory alone (native
diff), unless the kernel's overlay stores renames or metadata-only copies
there (``redirect_dir``, ``metacopy``), when core's naive diff is used, as in
moby. Stacks deeper than moby's 128 are mounted with the new mount API's
``lowerdir+``, up to overlayfs' own limit of 500.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from drivebay import archive, hookimpl
from drivebay.archive import WhiteoutFormat
from drivebay.errors import DriverNotSupported, InvalidConfig, MountError
from drivebay.fs.backing import backing_filesystem
from drivebay.fs.mounts import mounted_on_temporary_dir, unmount_all_under
from drivebay.hookspecs.graph import Change, GraphCapabilities, Mount
from drivebay.lateinit import SetByInit
from drivebay.storageopts import layer_size
from drivebay.units import parse_size_option
from drivebay_graphdriver_overlay2.layout import MountFacts, Overlay2Layout
from drivebay_graphdriver_overlay2.mounting import (
    KernelOverlay,
    OverlayMounter,
    OverlayStack,
    ProgramOverlay,
    kernel_max_lowers,
    kernel_parameter,
)
from drivebay_graphdriver_overlay2.probe import probe_reason, supports_d_type
from drivebay_graphdriver_overlay2.quota import LayerQuota, quota_for, require_quota

NAME = "overlay2"
PRIVATE_XATTRS = ("trusted.overlay.", "user.overlay.")
OPTIONS = ("size", "mount_program")


def native_diff_blocker(mount_program: str | None, userxattr: bool) -> str | None:
    """Why the upper directory alone would not describe a layer's change, or None if it does."""
    if mount_program:
        return f"layers are mounted by {mount_program}, whose upper-dir format may differ"
    if userxattr:
        return "overlay keeps opaque dirs in user.overlay.* xattrs (userxattr)"
    for parameter in ("redirect_dir", "metacopy"):
        if kernel_parameter(parameter) in ("Y", "on"):
            return f"the kernel's overlay has {parameter} on"
    return None


def _driver_options(options: Mapping[str, str]) -> dict[str, str]:
    """Options by their short names; ``overlay2.size`` is accepted for ``size``, as Docker spells it."""
    found = {}
    for key, value in options.items():
        short = key.removeprefix(f"{NAME}.")
        if short not in OPTIONS:
            raise InvalidConfig(f"storage driver 'overlay2' has no option '{key}' (accepted: {', '.join(OPTIONS)})")
        found[short] = value
    return found


class Overlay2Driver:
    """Layers as overlayfs upper directories; see the module docstring."""

    layout = SetByInit[Overlay2Layout]("graph_init")
    mounter = SetByInit[OverlayMounter]("graph_init")

    def __init__(self) -> None:
        self.default_size: int | None = None
        self.mount_program: str | None = None
        self.userxattr = False
        self.native_blocker: str | None = None
        self._quota: LayerQuota | None = None
        self._stacks: dict[str, tuple[str, bool, OverlayStack]] = {}
        # graph_probe's answer per home: graph_init on the same home needs it again, and each probe
        # is a test mount and unmount.
        self._probed: dict[Path, str | None] = {}

    @hookimpl
    def graph_capabilities(self) -> GraphCapabilities:
        return GraphCapabilities(
            native_diff=True,
            quota=True,
            max_depth=kernel_max_lowers(),
            quota_filesystems=("btrfs", "xfs"),
        )

    @hookimpl
    def graph_probe(self, home: Path) -> str | None:
        self._probed[home] = probe_reason(home)
        return self._probed[home]

    @hookimpl
    def graph_init(self, home: Path, options: Mapping[str, str]) -> None:
        opts = _driver_options(options)
        if "size" in opts:
            self.default_size = parse_size_option(opts["size"], "storage driver 'overlay2' option size")
            require_quota(home)
        self.mount_program = opts.get("mount_program")
        if self.mount_program:
            program = shutil.which(self.mount_program)
            if program is None:
                raise DriverNotSupported(
                    NAME, f"mount_program {self.mount_program} is not installed", "install it (fuse-overlayfs)"
                )
            self.mount_program = program
            self.mounter = ProgramOverlay(program)
        else:
            reason = self._probed[home] if home in self._probed else probe_reason(home)
            if reason is not None:
                raise DriverNotSupported(NAME, reason, "set root to another filesystem, or choose vfs")
            self.userxattr = os.geteuid() != 0
            self.mounter = KernelOverlay(userxattr=self.userxattr)
        self.native_blocker = native_diff_blocker(self.mount_program, self.userxattr)
        self.layout = Overlay2Layout(home)
        self.layout.make_dirs()

    # -- lifecycle --------------------------------------------------------

    def _create(self, layer_id: str, parent: str | None, storage_opts: Mapping[str, str], rw: bool) -> None:
        size = layer_size(NAME, layer_id, storage_opts, self.default_size if rw else None)
        if size is not None:
            if self._quota is None:
                self._quota = require_quota(self.layout.home)
            self._quota.limit(self.layout.dir(layer_id), size)
        self.layout.create(layer_id, parent, read_only=not rw)

    @hookimpl
    def graph_create(self, layer_id: str, parent: str | None, storage_opts: Mapping[str, str]) -> None:
        self._create(layer_id, parent, storage_opts, rw=False)

    @hookimpl
    def graph_create_rw(self, layer_id: str, parent: str | None, storage_opts: Mapping[str, str]) -> None:
        self._create(layer_id, parent, storage_opts, rw=True)

    @hookimpl
    def graph_remove(self, layer_id: str) -> None:
        layer_dir = self.layout.dir(layer_id)
        if not layer_dir.exists():
            self.layout.require(layer_id)
        unmount_all_under(layer_dir)
        self._stacks.pop(layer_id, None)
        self.layout.unlink(layer_id)
        quota = quota_for(self.layout.home)
        if isinstance(quota, str) or not quota.release(layer_dir):
            shutil.rmtree(layer_dir)

    @hookimpl
    def graph_exists(self, layer_id: str) -> bool:
        return self.layout.exists(layer_id)

    # -- mounts -----------------------------------------------------------

    def _stack(self, layer_id: str, facts: MountFacts) -> OverlayStack:
        """The layer's overlay: read-only layers stack their own diff on top of the lowers.

        Made once per layer and kept while its ``lower`` file and kind stay the same, so a
        mount does not split, rebuild and re-join hundreds of lower paths each time.
        """
        kept = self._stacks.get(layer_id)
        if kept is not None and kept[0] == facts.lower_text and kept[1] == facts.read_only:
            return kept[2]
        if facts.read_only:
            stack = OverlayStack(self.layout.home, (f"{layer_id}/diff", *facts.lowers))
        else:
            stack = OverlayStack(self.layout.home, facts.lowers, f"{layer_id}/diff", f"{layer_id}/work")
        self._stacks[layer_id] = (facts.lower_text, facts.read_only, stack)
        return stack

    def _is_mounted(self, layer_id: str) -> bool:
        # A mount point's device differs from its parent's: one stat each, no mount table scan per get.
        return os.stat(self.layout.merged(layer_id)).st_dev != os.stat(self.layout.dir(layer_id)).st_dev

    @hookimpl
    def graph_get(self, layer_id: str) -> Path:
        facts = self.layout.mount_facts(layer_id)
        if not facts.lower_text:
            self.layout.require(layer_id)
            return self.layout.diff(layer_id)
        merged = self.layout.merged(layer_id)
        if facts.mounted:
            return merged
        stack = self._stack(layer_id, facts)
        try:
            self.mounter.mount(stack, merged)
        except MountError as exc:
            self.layout.require(layer_id)  # a layer without its diff/ is not found, rather than unmountable
            raise MountError(
                f"overlay2 could not mount layer '{layer_id}' ({len(stack.lowers)} lower layers): {exc}"
            ) from exc
        if stack.upper is not None and not os.access(merged, os.W_OK) and os.statvfs(merged).f_flag & os.ST_RDONLY:
            # overlayfs mounts read-only, quietly, when it cannot make its work dir (a full quota, say). access()
            # first: statfs on overlay sums the upper filesystem's free space counters, a cost on every mount.
            self.mounter.unmount(merged)
            raise MountError(
                f"overlay2 could mount layer '{layer_id}' only read-only: its work dir could not be written; "
                f"if the layer's size quota is full, free space in {self.layout.diff(layer_id)}"
            )
        return merged

    @hookimpl
    def graph_put(self, layer_id: str) -> None:
        merged = self.layout.merged(layer_id)
        if merged.exists() and self._is_mounted(layer_id):
            self.mounter.unmount(merged)

    @hookimpl
    def graph_mounts(self, layer_id: str) -> list[Mount] | None:
        self.layout.require(layer_id)
        facts = self.layout.mount_facts(layer_id)
        if not facts.lower_text:
            return [Mount("bind", str(self.layout.diff(layer_id)), ("rbind", "ro" if facts.read_only else "rw"))]
        # The options this driver itself mounts with (index=off, userxattr), so a caller's mount is the same.
        options = self.mounter.extra_options() + self._stack(layer_id, facts).options()
        if facts.read_only:
            options.insert(0, "ro")
        return [Mount("overlay", "overlay", tuple(options))]

    @hookimpl
    def graph_cleanup(self) -> None:
        unmount_all_under(self.layout.home)

    # -- facts ------------------------------------------------------------

    @hookimpl
    def graph_status(self) -> list[tuple[str, str]]:
        home = self.layout.home
        quota = quota_for(home)
        return [
            ("Backing Filesystem", backing_filesystem(home)),
            ("Supports d_type", str(supports_d_type(home)).lower()),
            ("Native Overlay Diff", "true" if self.native_blocker is None else f"false ({self.native_blocker})"),
            ("Max Depth", f"{kernel_max_lowers()} lower layers"),
            ("userxattr", str(self.userxattr).lower()),
            ("Mount Program", self.mounter.describe()),
            ("Quota", quota if isinstance(quota, str) else quota.describe()),
        ]

    @hookimpl
    def graph_metadata(self, layer_id: str) -> dict[str, str]:
        self.layout.require(layer_id)
        facts = {
            "UpperDir": str(self.layout.diff(layer_id)),
            "WorkDir": str(self.layout.work(layer_id)),
            "MergedDir": str(self.layout.merged(layer_id)),
            "ReadOnly": str(self.layout.is_read_only(layer_id)).lower(),
        }
        lowers = self.layout.lowers(layer_id)
        if lowers:
            facts["LowerDir"] = ":".join(str(self.layout.home / entry) for entry in lowers)
        return facts

    # -- diffs ------------------------------------------------------------

    def _native(self, layer_id: str, parent: str | None) -> bool:
        """Native diff is valid only against the layer's own parent and on a plain upper dir."""
        self.layout.require(layer_id)
        return self.native_blocker is None and self.layout.parent(layer_id) == parent

    @contextmanager
    def _parent_view(self, layer_id: str) -> Iterator[Path | None]:
        """A private read-only mount of what lies below ``layer_id``, apart from core's refcounted mounts."""
        lowers = tuple(self.layout.lowers(layer_id))
        if not lowers:
            yield None
            return
        if len(lowers) == 1:
            yield self.layout.diff(self.layout.layer_of_link(lowers[0]))
            return
        stack = OverlayStack(self.layout.home, lowers)
        with mounted_on_temporary_dir(
            self.layout.dir(layer_id),
            "parent-view-",
            lambda target: self.mounter.mount(stack, target),
            self.mounter.unmount,
        ) as target:
            yield target

    def _native_changes(self, layer_id: str) -> list[Change]:
        with self._parent_view(layer_id) as parent_root:
            return archive.tree_changes(self.layout.diff(layer_id), parent_root, WhiteoutFormat.OVERLAY)

    @hookimpl
    def graph_diff(self, layer_id: str, parent: str | None, out: BinaryIO) -> bool | None:
        if not self._native(layer_id, parent):
            return None
        archive.write_tree_tar(out, self.layout.diff(layer_id), WhiteoutFormat.OVERLAY, PRIVATE_XATTRS)
        return True

    @hookimpl
    def graph_changes(self, layer_id: str, parent: str | None) -> list[Change] | None:
        if not self._native(layer_id, parent):
            return None
        return self._native_changes(layer_id)

    @hookimpl
    def graph_diff_size(self, layer_id: str, parent: str | None) -> int | None:
        if not self._native(layer_id, parent):
            return None
        return archive.changes_size(self.layout.diff(layer_id), self._native_changes(layer_id))

    @hookimpl
    def graph_apply_diff(self, layer_id: str, parent: str | None, tar: BinaryIO) -> int | None:
        self.layout.require(layer_id)
        # With nothing below, a whiteout has nothing to hide: delete for real rather than leave 0/0 devices.
        whiteouts = WhiteoutFormat.OVERLAY if self.layout.lowers(layer_id) else WhiteoutFormat.DELETE
        return archive.apply_layer_tar(tar, self.layout.diff(layer_id), whiteouts)
