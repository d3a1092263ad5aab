"""The btrfs graph driver: each layer a subvolume, each child a snapshot of its parent.

Layout under the home, as moby's: ``subvolumes/<id>`` holds the layer;
``quotas/<id>`` holds its ``size`` limit in bytes, so the limit is applied again
after a restart (qgroups can be switched off, or the filesystem re-made).

Read-only (image) layers are read-only snapshots from the start. Filling one
with ``apply_diff`` clears the flag for the duration and sets it again, so a
layer is never left writable and children are snapshots of read-only layers.

Diffs follow the change (see :mod:`drivebay_graphdriver_btrfs.changes`) when
asked against the layer's own parent and that parent has not been written
since the snapshot; otherwise core's naive comparison runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from drivebay import archive, hookimpl
from drivebay.errors import DriverNotSupported, InvalidConfig, LayerNotFound
from drivebay.fs import btrfs
from drivebay.fs.backing import backing_filesystem
from drivebay.hookspecs.graph import Change, GraphCapabilities
from drivebay.lateinit import SetByInit
from drivebay.storageopts import layer_size
from drivebay.units import parse_size_option
from drivebay_graphdriver_btrfs.changes import snapshot_changes

NAME = "btrfs"
# No mounts, so the only depth limit is the registry's; moby sets none either.
MAX_DEPTH = 1 << 16
DRIVER_OPTIONS = ("btrfs.min_space", "size")
DIFF_METHOD = "btrfs generation numbers (native)"


class BtrfsDriver:
    """Layers as btrfs subvolumes; see the module docstring."""

    home = SetByInit[Path]("graph_init")

    def __init__(self) -> None:
        self.min_space = 0
        self.default_size: int | None = None

    def subvolume(self, layer_id: str) -> Path:
        return self.home / "subvolumes" / layer_id

    def quota_file(self, layer_id: str) -> Path:
        return self.home / "quotas" / layer_id

    def _existing(self, layer_id: str) -> Path:
        path = self.subvolume(layer_id)
        if not os.path.isdir(path):
            raise LayerNotFound(f"layer '{layer_id}' does not exist in storage driver 'btrfs' (no {path})")
        return path

    # -- setup ------------------------------------------------------------

    @hookimpl
    def graph_capabilities(self) -> GraphCapabilities:
        return GraphCapabilities(
            native_diff=True,
            quota=True,
            max_depth=MAX_DEPTH,
            quota_filesystems=("btrfs",),
            required_filesystem="btrfs",
        )

    @hookimpl
    def graph_probe(self, home: Path) -> str | None:
        fstype = backing_filesystem(home)
        return None if fstype == "btrfs" else f"backing fs is {fstype}, not btrfs"

    @hookimpl
    def graph_init(self, home: Path, options: Mapping[str, str]) -> None:
        if not btrfs.is_btrfs(home):
            raise DriverNotSupported(
                NAME,
                f"backing fs is {backing_filesystem(home)}, not btrfs",
                f"set `root` to a directory on a btrfs mount, or choose overlay2 for {home}",
            )
        for key, value in options.items():
            if key not in DRIVER_OPTIONS:
                raise InvalidConfig(
                    f"storage driver 'btrfs' has no option '{key}' (accepted: {', '.join(DRIVER_OPTIONS)})"
                )
            if key == "btrfs.min_space":
                self.min_space = parse_size_option(value, f"storage driver 'btrfs' option {key}")
            else:
                self.default_size = parse_size_option(value, f"storage driver 'btrfs' option {key}")
        self.home = home
        (home / "subvolumes").mkdir(exist_ok=True)
        (home / "quotas").mkdir(exist_ok=True)
        if self.default_size is not None:
            self._check_size(self.default_size)
        self._reapply_quotas()

    def _reapply_quotas(self) -> None:
        for entry in os.scandir(self.home / "quotas"):
            subvolume = self.subvolume(entry.name)
            if subvolume.is_dir():
                self._limit(subvolume, int(Path(entry.path).read_text()))

    def _check_size(self, size: int) -> None:
        if size < self.min_space:
            raise InvalidConfig(
                f"storage driver 'btrfs': size {size} bytes is less than btrfs.min_space ({self.min_space} bytes); "
                "ask for more, or lower btrfs.min_space"
            )

    def _limit(self, subvolume: Path, size: int) -> None:
        btrfs.enable_quota(self.home)
        btrfs.set_qgroup_limit(subvolume, size)

    # -- layers -----------------------------------------------------------

    def _create(self, layer_id: str, parent: str | None, storage_opts: Mapping[str, str], rw: bool) -> None:
        size = layer_size(NAME, layer_id, storage_opts, self.default_size if rw else None)
        if size is not None:
            self._check_size(size)
        path = self.subvolume(layer_id)
        if parent is None:
            btrfs.create_subvolume(path)
            if not rw:
                btrfs.set_readonly(path, True)
        else:
            btrfs.snapshot(self._existing(parent), path, readonly=not rw)
        if size is not None:
            self._limit(path, size)
            self.quota_file(layer_id).write_text(str(size))

    @hookimpl
    def graph_create(self, layer_id: str, parent: str | None, storage_opts: Mapping[str, str]) -> None:
        self._create(layer_id, parent, storage_opts, rw=False)

    @hookimpl
    def graph_create_rw(self, layer_id: str, parent: str | None, storage_opts: Mapping[str, str]) -> None:
        self._create(layer_id, parent, storage_opts, rw=True)

    @hookimpl
    def graph_remove(self, layer_id: str) -> None:
        btrfs.delete_subvolume(self._existing(layer_id))
        self.quota_file(layer_id).unlink(missing_ok=True)

    @hookimpl
    def graph_get(self, layer_id: str) -> Path:
        return self._existing(layer_id)

    @hookimpl
    def graph_put(self, layer_id: str) -> None:
        """Nothing is mounted, so there is nothing to release."""

    @hookimpl
    def graph_exists(self, layer_id: str) -> bool:
        return os.path.isdir(self.subvolume(layer_id))

    @hookimpl
    def graph_status(self) -> list[tuple[str, str]]:
        return [
            ("Backing Filesystem", "btrfs"),
            ("Build Version", f"btrfs-progs {btrfs.btrfs_version()}"),
            ("Quota", "enabled" if btrfs.quota_enabled(self.home) else "disabled"),
            ("Min Space", str(self.min_space)),
            ("Diff Method", DIFF_METHOD),
        ]

    @hookimpl
    def graph_metadata(self, layer_id: str) -> dict[str, str]:
        path = self._existing(layer_id)
        info = btrfs.subvolume_info(path)
        meta = {"path": str(path), "subvolume_id": str(info.id), "readonly": str(info.readonly).lower()}
        if self.quota_file(layer_id).exists():
            meta["size"] = self.quota_file(layer_id).read_text()
        return meta

    @hookimpl
    def graph_cleanup(self) -> None:
        """Nothing is mounted; layers stay."""

    # -- diffs ------------------------------------------------------------

    def _native_changes(self, layer_id: str, parent: str | None) -> list[Change] | None:
        child = self._existing(layer_id)
        if parent is None:
            return None
        origin = self._existing(parent)
        # btrfs updates inode items (sizes) when dirty data is written out and
        # root items at a commit; the generation check and the tree search below
        # must see every write made so far.
        btrfs.sync(child)
        child_info = btrfs.subvolume_info(child)
        origin_info = btrfs.subvolume_info(origin)
        # Valid only against the subvolume this one was snapshotted from, unchanged since.
        if child_info.parent_uuid != origin_info.uuid or not self._unchanged_since(origin, origin_info, child_info):
            return None
        return snapshot_changes(child, origin, child_info.otransid)

    @staticmethod
    def _unchanged_since(origin: Path, origin_info: btrfs.SubvolumeInfo, child_info: btrfs.SubvolumeInfo) -> bool:
        """Whether ``origin``'s files are as they were when ``child`` was snapshotted from it.

        A newer generation alone does not say so: every snapshot of the origin
        (a second container of the same image) rewrites its root node, and so
        its generation, without changing a file. Any change to a file or a
        directory writes that inode's item, so none written since means none
        made; the search reads only tree blocks written since, so it costs next
        to nothing when only the root node was.
        """
        if origin_info.generation <= child_info.otransid:
            return True
        return not btrfs.inodes_changed_since(origin, child_info.otransid)

    @hookimpl
    def graph_changes(self, layer_id: str, parent: str | None) -> list[Change] | None:
        return self._native_changes(layer_id, parent)

    @hookimpl
    def graph_diff(self, layer_id: str, parent: str | None, out: BinaryIO) -> bool | None:
        changes = self._native_changes(layer_id, parent)
        if changes is None:
            return None
        archive.write_changes_tar(out, self.subvolume(layer_id), changes)
        return True

    @hookimpl
    def graph_diff_size(self, layer_id: str, parent: str | None) -> int | None:
        changes = self._native_changes(layer_id, parent)
        if changes is None:
            return None
        return int(archive.changes_size(self.subvolume(layer_id), changes))

    @contextmanager
    def _writable(self, path: Path) -> Iterator[None]:
        readonly = btrfs.is_readonly(path)
        if readonly:
            btrfs.set_readonly(path, False)
        try:
            yield
        finally:
            if readonly:
                btrfs.set_readonly(path, True)

    @hookimpl
    def graph_apply_diff(self, layer_id: str, parent: str | None, tar: BinaryIO) -> int | None:
        path = self._existing(layer_id)
        with self._writable(path):
            return int(archive.apply_layer_tar(tar, path, archive.WhiteoutFormat.DELETE))
