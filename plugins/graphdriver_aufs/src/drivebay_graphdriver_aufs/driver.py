"""The aufs graph driver: moby's aufs layout, mounted by kernel aufs or fuse-overlayfs.

Branches keep aufs's own whiteouts (``.wh.NAME``, ``.wh..wh..opq``), so a
layer's diff is close to a plain tar of its branch directory: native, and
proportional to the change.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from drivebay import archive, hookimpl
from drivebay.archive import WhiteoutFormat
from drivebay.errors import DriverNotSupported, InvalidConfig, LayerNotFound, QuotaNotSupported
from drivebay.fs.backing import backing_filesystem
from drivebay.fs.mounts import is_mountpoint, mounted_on_temporary_dir, unmount, unmount_all_under
from drivebay.hookspecs.graph import Change, GraphCapabilities, Mount
from drivebay.lateinit import SetByInit
from drivebay.storageopts import layer_size
from drivebay_graphdriver_aufs.layout import AufsLayout
from drivebay_graphdriver_aufs.mountpaths import KernelAufs, MountPath, choose_mount_path
from drivebay_graphdriver_aufs.whiteouts import normalise_branch

NAME = "aufs"
# aufs is built with CONFIG_AUFS_BRANCH_MAX_127 by default; moby enforces the same.
MAX_DEPTH = 127
PRIVATE_XATTRS = ("user.fuseoverlayfs.", "trusted.overlay.", "user.overlay.")
UNSUPPORTED_BACKING = {"aufs", "fuse", "overlay"}


class AufsDriver:
    """Layers as aufs branches; see the module docstring."""

    layout = SetByInit[AufsLayout]("graph_init")
    mount_path = SetByInit[MountPath]("graph_init")

    @hookimpl
    def graph_capabilities(self) -> GraphCapabilities:
        return GraphCapabilities(native_diff=True, quota=False, max_depth=MAX_DEPTH, long_names=False)

    @hookimpl
    def graph_probe(self, home: Path) -> str | None:
        fs = backing_filesystem(home)
        if fs in UNSUPPORTED_BACKING:
            return f"backing fs {fs} cannot hold aufs branches"
        chosen = choose_mount_path()
        return chosen if isinstance(chosen, str) else None

    @hookimpl
    def graph_init(self, home: Path, options: Mapping[str, str]) -> None:
        if options:
            raise InvalidConfig(
                f"storage driver 'aufs' takes no options (got {', '.join(sorted(options))}); remove them"
            )
        reason = self.graph_probe(home)
        if reason is not None:
            raise DriverNotSupported(
                NAME, reason, "install fuse-overlayfs or use a kernel with aufs, or choose overlay2"
            )
        chosen = choose_mount_path()
        assert not isinstance(chosen, str)
        self.mount_path = chosen
        self.layout = AufsLayout(home)
        self.layout.make_dirs()
        for layer_id in self.layout.dirty_layers():
            self._settle(layer_id)

    def _settle(self, layer_id: str) -> None:
        """After a read-write union is unmounted (or lost in a crash): aufs-format whiteouts only."""
        if self.layout.diff(layer_id).exists():
            normalise_branch(self.layout.diff(layer_id))
        self.layout.dirty_marker(layer_id).unlink(missing_ok=True)

    def _create(self, layer_id: str, parent: str | None, storage_opts: Mapping[str, str], rw: bool) -> None:
        if layer_size(NAME, layer_id, storage_opts, None) is not None:
            raise QuotaNotSupported(
                "storage driver 'aufs' cannot limit layer size; use overlay2 or btrfs on a btrfs home for 'size'"
            )
        ancestors = [parent, *self.layout.ancestors(parent)] if parent else []
        self.layout.diff(layer_id).mkdir(mode=0o755)
        self.layout.mnt(layer_id).mkdir(exist_ok=True)
        if rw:
            # Unlike moby, image layers get no writable branch, so a mounted image layer is read-only.
            self.layout.rw_marker(layer_id).touch()
        self.layout.write_ancestors(layer_id, ancestors)

    def _is_rw(self, layer_id: str) -> bool:
        return self.layout.rw_marker(layer_id).exists()

    @hookimpl
    def graph_create(self, layer_id: str, parent: str | None, storage_opts: Mapping[str, str]) -> None:
        self._create(layer_id, parent, storage_opts, rw=False)

    @hookimpl
    def graph_create_rw(self, layer_id: str, parent: str | None, storage_opts: Mapping[str, str]) -> None:
        self._create(layer_id, parent, storage_opts, rw=True)

    @hookimpl
    def graph_remove(self, layer_id: str) -> None:
        if not self.graph_exists(layer_id):
            raise LayerNotFound(f"aufs has no layer '{layer_id}'")
        self.graph_put(layer_id)
        for directory in (self.layout.diff(layer_id), self.layout.mnt(layer_id), self.layout.work(layer_id)):
            if directory.exists():
                shutil.rmtree(directory)
        for path in (
            self.layout.layers_file(layer_id),
            self.layout.rw_marker(layer_id),
            self.layout.dirty_marker(layer_id),
        ):
            path.unlink(missing_ok=True)

    def _branches(self, layer_id: str) -> tuple[Path | None, list[Path]]:
        lower = [self.layout.diff(a) for a in self.layout.ancestors(layer_id)]
        if self._is_rw(layer_id):
            return self.layout.diff(layer_id), lower
        return None, [self.layout.diff(layer_id), *lower]

    @hookimpl
    def graph_get(self, layer_id: str) -> Path:
        if not self.graph_exists(layer_id):
            raise LayerNotFound(f"aufs has no layer '{layer_id}'")
        if not self.layout.ancestors(layer_id):
            return self.layout.diff(layer_id)
        target = self.layout.mnt(layer_id)
        if is_mountpoint(target):
            return target
        rw_branch, ro_branches = self._branches(layer_id)
        if rw_branch is not None:
            self.layout.dirty_marker(layer_id).touch()
        self.mount_path.mount(rw_branch, ro_branches, self.layout.work(layer_id), target)
        return target

    @hookimpl
    def graph_put(self, layer_id: str) -> None:
        target = self.layout.mnt(layer_id)
        if is_mountpoint(target):
            unmount(target)
        if self.layout.dirty_marker(layer_id).exists():
            self._settle(layer_id)

    @hookimpl
    def graph_exists(self, layer_id: str) -> bool:
        return self.layout.layers_file(layer_id).exists() and self.layout.diff(layer_id).is_dir()

    @hookimpl
    def graph_status(self) -> list[tuple[str, str]]:
        return [
            ("Mount Path", self.mount_path.describe()),
            ("Root Dir", str(self.layout.home)),
            ("Backing Filesystem", backing_filesystem(self.layout.home)),
            ("Dirs", str(sum(1 for _ in (self.layout.home / "diff").iterdir()))),
            ("Diff", "native (branch directory with aufs whiteouts)"),
            ("Max Depth", str(MAX_DEPTH)),
        ]

    @hookimpl
    def graph_metadata(self, layer_id: str) -> dict[str, str]:
        if not self.graph_exists(layer_id):
            raise LayerNotFound(f"aufs has no layer '{layer_id}'")
        return {
            "branch": str(self.layout.diff(layer_id)),
            "mountpoint": str(self.layout.mnt(layer_id)),
            "ancestors": ",".join(self.layout.ancestors(layer_id)),
        }

    @hookimpl
    def graph_cleanup(self) -> None:
        unmount_all_under(self.layout.home / "mnt")
        for layer_id in self.layout.dirty_layers():
            self._settle(layer_id)

    def _own_parent(self, layer_id: str, parent: str | None) -> bool:
        ancestors = self.layout.ancestors(layer_id)
        return (ancestors[0] if ancestors else None) == parent

    @contextmanager
    def _parent_view(self, parent: str | None) -> Iterator[Path | None]:
        """A private read-only view of ``parent``, independent of core's refcounted mounts."""
        if parent is None:
            yield None
            return
        if not self.layout.ancestors(parent):
            yield self.layout.diff(parent)
            return
        branches = [self.layout.diff(parent)] + [self.layout.diff(a) for a in self.layout.ancestors(parent)]

        def mount_view(target: Path) -> None:
            self.mount_path.mount(None, branches, self.layout.work(parent), target)

        with mounted_on_temporary_dir(self.layout.home / "mnt", "view-", mount_view) as target:
            yield target

    def _native_changes(self, layer_id: str, parent: str | None) -> list[Change]:
        self._settle_if_unmounted(layer_id)
        with self._parent_view(parent) as parent_root:
            return archive.tree_changes(self.layout.diff(layer_id), parent_root, WhiteoutFormat.AUFS)

    def _settle_if_unmounted(self, layer_id: str) -> None:
        if self.layout.dirty_marker(layer_id).exists() and not is_mountpoint(self.layout.mnt(layer_id)):
            self._settle(layer_id)

    @hookimpl
    def graph_diff(self, layer_id: str, parent: str | None, out: BinaryIO) -> bool | None:
        if not self._own_parent(layer_id, parent):
            return None
        self._settle_if_unmounted(layer_id)
        archive.write_tree_tar(out, self.layout.diff(layer_id), WhiteoutFormat.AUFS, PRIVATE_XATTRS)
        return True

    @hookimpl
    def graph_changes(self, layer_id: str, parent: str | None) -> list[Change] | None:
        if not self._own_parent(layer_id, parent):
            return None
        return self._native_changes(layer_id, parent)

    @hookimpl
    def graph_diff_size(self, layer_id: str, parent: str | None) -> int | None:
        if not self._own_parent(layer_id, parent):
            return None
        return archive.changes_size(self.layout.diff(layer_id), self._native_changes(layer_id, parent))

    @hookimpl
    def graph_apply_diff(self, layer_id: str, parent: str | None, tar: BinaryIO) -> int | None:
        return archive.apply_layer_tar(tar, self.layout.diff(layer_id), WhiteoutFormat.AUFS)

    @hookimpl
    def graph_mounts(self, layer_id: str) -> list[Mount] | None:
        if not self.graph_exists(layer_id):
            raise LayerNotFound(f"aufs has no layer '{layer_id}'")
        rw_branch, ro_branches = self._branches(layer_id)
        if not self.layout.ancestors(layer_id):
            return [Mount("bind", str(self.layout.diff(layer_id)), ("rbind", "rw" if rw_branch else "ro"))]
        if isinstance(self.mount_path, KernelAufs):
            branches = ([f"{rw_branch}=rw"] if rw_branch else []) + [f"{b}=ro+wh" for b in ro_branches]
            return [Mount("aufs", "none", ("br:" + ":".join(branches), "dio", "dirperm1"))]
        options = [f"lowerdir={':'.join(map(str, ro_branches))}"]
        if rw_branch is not None:
            # The caller mounts from this description without calling get, so the work dir must exist now.
            self.layout.work(layer_id).mkdir(parents=True, exist_ok=True)
            options += [f"upperdir={rw_branch}", f"workdir={self.layout.work(layer_id)}"]
        return [Mount("fuse3.fuse-overlayfs", "fuse-overlayfs", tuple(options))]
