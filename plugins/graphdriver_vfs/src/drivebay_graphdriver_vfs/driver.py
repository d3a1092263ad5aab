"""The vfs graph driver: every layer is a plain directory holding a full copy of its parent.

Layout, as moby's: ``<home>/dir/<id>``. Nothing is ever mounted, so the
"merged view" is the directory itself and any chain depth works. The copy is
:func:`drivebay.fs.copytree.copy_tree`, which reflinks file data on btrfs and
xfs, so a child costs metadata only there. Layer tars are applied straight into
the directory with deletions carried out (no on-disk whiteouts), and diffs are
core's naive tree comparison.

``size`` (per layer, or as a driver option for every layer) is enforced only
when the home is on btrfs: the layer is then a subvolume with a qgroup limit.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

from drivebay import archive, hookimpl
from drivebay.archive import WhiteoutFormat
from drivebay.errors import InvalidConfig, LayerNotFound, QuotaNotSupported
from drivebay.fs import btrfs
from drivebay.fs.backing import backing_filesystem
from drivebay.fs.copytree import copy_method, copy_tree
from drivebay.fs.mounts import unmount_all_under
from drivebay.hookspecs.graph import GraphCapabilities
from drivebay.lateinit import SetByInit
from drivebay.storageopts import layer_size
from drivebay.units import parse_size_option

NAME = "vfs"
MAX_DEPTH = 1000
"""vfs mounts nothing, so no kernel limit applies; the bound keeps the facade's depth check meaningful."""
OPTIONS = ("size",)


def _check_options(options: Mapping[str, str]) -> None:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise InvalidConfig(
            f"storage driver 'vfs' has no driver option {', '.join(unknown)} (accepted: {', '.join(OPTIONS)})"
        )


class VfsDriver:
    """Layers as full directory copies; see the module docstring."""

    home = SetByInit[Path]("graph_init")

    def __init__(self) -> None:
        self.on_btrfs = False
        self.default_size: int | None = None

    def layer_dir(self, layer_id: str) -> Path:
        return self.home / "dir" / layer_id

    def _existing(self, layer_id: str) -> Path:
        path = self.layer_dir(layer_id)
        if not path.is_dir():
            raise LayerNotFound(f"layer '{layer_id}' does not exist in storage driver 'vfs' (no {path})")
        return path

    # -- setup ------------------------------------------------------------

    @hookimpl
    def graph_capabilities(self) -> GraphCapabilities:
        return GraphCapabilities(
            native_diff=False, quota=True, max_depth=MAX_DEPTH, quota_filesystems=("btrfs",)
        )

    @hookimpl
    def graph_probe(self, home: Path) -> str | None:
        # Plain directories and copies work on every filesystem that can hold a root.
        return None

    @hookimpl
    def graph_init(self, home: Path, options: Mapping[str, str]) -> None:
        _check_options(options)
        self.home = home
        (home / "dir").mkdir(mode=0o700, exist_ok=True)
        self.on_btrfs = btrfs.is_btrfs(home)
        if "size" in options:
            self.default_size = parse_size_option(options["size"], "storage driver 'vfs' option size")
            self._require_quota(options["size"], "every layer")

    def _require_quota(self, size_text: str, what: str) -> None:
        if not self.on_btrfs:
            raise QuotaNotSupported(
                f"storage driver 'vfs' cannot limit {what} to size={size_text}: {self.home} is on "
                f"{backing_filesystem(self.home)}, and vfs enforces sizes only with btrfs qgroups "
                "(xfs project quotas would need a kernel with CONFIG_QUOTA); put the root on btrfs or drop 'size'"
            )

    # -- layers -----------------------------------------------------------

    def _create(self, layer_id: str, parent: str | None, storage_opts: Mapping[str, str]) -> None:
        size = layer_size(NAME, layer_id, storage_opts, self.default_size)
        if "size" in storage_opts:
            self._require_quota(storage_opts["size"], f"layer '{layer_id}'")
        path = self.layer_dir(layer_id)
        if size is not None:
            btrfs.create_subvolume(path)
            btrfs.enable_quota(path)
            btrfs.set_qgroup_limit(path, size)
            os.chmod(path, 0o755)
        else:
            path.mkdir(mode=0o755)
        if parent is not None:
            copy_tree(self._existing(parent), path)

    @hookimpl
    def graph_create(self, layer_id: str, parent: str | None, storage_opts: Mapping[str, str]) -> None:
        self._create(layer_id, parent, storage_opts)

    @hookimpl
    def graph_create_rw(self, layer_id: str, parent: str | None, storage_opts: Mapping[str, str]) -> None:
        self._create(layer_id, parent, storage_opts)

    @hookimpl
    def graph_remove(self, layer_id: str) -> None:
        path = self._existing(layer_id)
        # A container may have mounted something inside its layer; rmtree must not descend into it.
        unmount_all_under(path)
        if self.on_btrfs:
            self._remove_subvolumes(path)
        if path.exists():
            shutil.rmtree(path)

    @staticmethod
    def _remove_subvolumes(path: Path) -> None:
        """Delete ``path`` if it is a subvolume, else the subvolumes inside it, which rmtree cannot remove."""
        if btrfs.is_subvolume(path):
            btrfs.delete_subvolume(path)
            return
        for current, dirs, _ in os.walk(path):
            for name in list(dirs):
                child = Path(current) / name
                if os.lstat(child).st_ino == btrfs.SUBVOLUME_INODE:
                    btrfs.delete_subvolume(child)
                    dirs.remove(name)

    @hookimpl
    def graph_get(self, layer_id: str) -> Path:
        return self._existing(layer_id).absolute()

    @hookimpl
    def graph_put(self, layer_id: str) -> None:
        # Nothing is mounted, so there is nothing to release.
        return None

    @hookimpl
    def graph_exists(self, layer_id: str) -> bool:
        return self.layer_dir(layer_id).is_dir()

    @hookimpl
    def graph_status(self) -> list[tuple[str, str]]:
        fs = backing_filesystem(self.home)
        return [
            ("Backing Filesystem", fs),
            ("Copy Method", copy_method(self.home / "dir")),
            ("Size Limits", "btrfs qgroups" if self.on_btrfs else f"not supported on {fs}"),
            ("Default Size", str(self.default_size) if self.default_size is not None else "none"),
        ]

    @hookimpl
    def graph_metadata(self, layer_id: str) -> dict[str, str]:
        path = self._existing(layer_id)
        facts = {"Dir": str(path)}
        if self.on_btrfs and btrfs.is_subvolume(path):
            usage = btrfs.qgroup_usage(path)
            facts["Subvolume"] = str(btrfs.subvolume_id(path))
            facts["SizeLimit"] = str(usage.limit) if usage.limit is not None else "none"
        return facts

    @hookimpl
    def graph_cleanup(self) -> None:
        # vfs never mounts, so nothing is left to unmount at shutdown.
        return None

    @hookimpl
    def graph_apply_diff(self, layer_id: str, parent: str | None, tar: BinaryIO) -> int:
        # The layer already holds its parent's files, so deletions are carried out, not recorded.
        return archive.apply_layer_tar(tar, self._existing(layer_id), WhiteoutFormat.DELETE)
