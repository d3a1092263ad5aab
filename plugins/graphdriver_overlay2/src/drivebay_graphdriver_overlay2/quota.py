"""The ``size`` storage-opt: limit what a layer's upper directory may hold.

- xfs mounted with ``prjquota``: a project quota on the layer directory, as
  moby does (project ID with inheritance, then ``quotactl(Q_XSETQLIM)``).
- btrfs: the layer directory is a subvolume with a qgroup limit. The whole
  layer directory, not only ``diff/``, because overlay renames from ``work/``
  into ``diff/`` on copy-up and btrfs refuses renames across subvolumes.
- anything else: ``QuotaNotSupported``, naming what would work.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import stat
from pathlib import Path
from typing import Protocol

from drivebay.errors import QuotaNotSupported
from drivebay.fs.backing import backing_filesystem, mount_holding

FS_IOC_FSGETXATTR = 0x801C581F
FS_IOC_FSSETXATTR = 0x401C5820
FS_XFLAG_PROJINHERIT = 0x200
Q_XSETQLIM = 0x5804
PRJQUOTA = 2
FS_DQUOT_VERSION = 1
FS_PROJ_QUOTA = 2
FS_DQ_BSOFT = 1 << 2
FS_DQ_BHARD = 1 << 3
# Project IDs below this are left to the administrator.
FIRST_PROJECT_ID = 1 << 16


class LayerQuota(Protocol):
    def describe(self) -> str: ...

    def limit(self, layer_dir: Path, size: int) -> None:
        """Make ``layer_dir`` (not yet existing) and cap what it may hold at ``size`` bytes."""

    def release(self, layer_dir: Path) -> bool:
        """Remove ``layer_dir`` if it is quota-backed; return whether it was."""


def quota_for(home: Path) -> LayerQuota | str:
    """The quota method for layers under ``home``, or why there is none."""
    fstype = backing_filesystem(home)
    if fstype == "btrfs":
        return BtrfsQuota(home)
    if fstype == "xfs":
        entry = mount_holding(home)
        options = f"{entry.options},{entry.super_options}" if entry else ""
        if {"prjquota", "pquota"} & set(options.split(",")):
            return XfsProjectQuota(home)
        return f"the xfs holding {home} is not mounted with prjquota (needs a kernel with CONFIG_XFS_QUOTA)"
    return f"{home} is on {fstype}; 'size' needs xfs mounted with prjquota, or btrfs"


def require_quota(home: Path) -> LayerQuota:
    found = quota_for(home)
    if isinstance(found, str):
        raise QuotaNotSupported(f"storage driver 'overlay2' cannot honour 'size': {found}")
    return found


class BtrfsQuota:
    """A subvolume per limited layer, with a qgroup limit.

    Its methods import ``drivebay.fs.btrfs`` themselves: defining that module's
    ioctl structures takes ~5 ms, which overlay2 on any other filesystem would
    otherwise pay on every command.
    """

    def __init__(self, home: Path) -> None:
        self.home = home

    def describe(self) -> str:
        return "btrfs qgroups (layer directory as subvolume)"

    def limit(self, layer_dir: Path, size: int) -> None:
        from drivebay.fs import btrfs

        btrfs.create_subvolume(layer_dir)
        btrfs.enable_quota(self.home)
        btrfs.set_qgroup_limit(layer_dir, size)

    def release(self, layer_dir: Path) -> bool:
        from drivebay.fs import btrfs

        if not btrfs.is_subvolume(layer_dir):
            return False
        btrfs.delete_subvolume(layer_dir)
        return True


class _FsXattr(ctypes.Structure):
    _fields_ = [
        ("fsx_xflags", ctypes.c_uint32),
        ("fsx_extsize", ctypes.c_uint32),
        ("fsx_nextents", ctypes.c_uint32),
        ("fsx_projid", ctypes.c_uint32),
        ("fsx_cowextsize", ctypes.c_uint32),
        ("fsx_pad", ctypes.c_ubyte * 8),
    ]


class _FsDiskQuota(ctypes.Structure):
    _fields_ = [
        ("d_version", ctypes.c_int8),
        ("d_flags", ctypes.c_int8),
        ("d_fieldmask", ctypes.c_uint16),
        ("d_id", ctypes.c_uint32),
        ("d_blk_hardlimit", ctypes.c_uint64),
        ("d_blk_softlimit", ctypes.c_uint64),
        ("d_ino_hardlimit", ctypes.c_uint64),
        ("d_ino_softlimit", ctypes.c_uint64),
        ("d_bcount", ctypes.c_uint64),
        ("d_icount", ctypes.c_uint64),
        ("d_itimer", ctypes.c_int32),
        ("d_btimer", ctypes.c_int32),
        ("d_iwarns", ctypes.c_uint16),
        ("d_bwarns", ctypes.c_uint16),
        ("d_itimer_hi", ctypes.c_int8),
        ("d_btimer_hi", ctypes.c_int8),
        ("d_rtbtimer_hi", ctypes.c_int8),
        ("d_padding2", ctypes.c_int8),
        ("d_rtb_hardlimit", ctypes.c_uint64),
        ("d_rtb_softlimit", ctypes.c_uint64),
        ("d_rtbcount", ctypes.c_uint64),
        ("d_rtbtimer", ctypes.c_int32),
        ("d_rtbwarns", ctypes.c_uint16),
        ("d_padding3", ctypes.c_int16),
        ("d_padding4", ctypes.c_char * 8),
    ]


# The process's own libc: find_library would run ldconfig in a subprocess on every start.
_libc = ctypes.CDLL(None, use_errno=True)
_libc.quotactl.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p]


def _project_xattr(path: Path) -> _FsXattr:
    attrs = _FsXattr()
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, FS_IOC_FSGETXATTR, attrs, True)
    finally:
        os.close(fd)
    return attrs


class XfsProjectQuota:
    """moby's xfs project quotas: a project ID per layer directory, inherited by what it holds."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.block_device = home / "backingFsBlockDev"
        self._last_id: int | None = None

    def describe(self) -> str:
        return "xfs project quota"

    def _next_project_id(self) -> int:
        if self._last_id is None:
            ids = [FIRST_PROJECT_ID, _project_xattr(self.home).fsx_projid]
            ids += [_project_xattr(d).fsx_projid for d in self.home.iterdir() if d.is_dir() and not d.is_symlink()]
            self._last_id = max(ids)
        self._last_id += 1
        return self._last_id

    def _device(self) -> Path:
        # quotactl needs the block device; moby makes its own node, as a container may lack the mount's source.
        if not self.block_device.exists():
            os.mknod(self.block_device, stat.S_IFBLK | 0o600, os.stat(self.home).st_dev)
        return self.block_device

    def limit(self, layer_dir: Path, size: int) -> None:
        layer_dir.mkdir(mode=0o700)
        project = self._next_project_id()
        attrs = _project_xattr(layer_dir)
        attrs.fsx_projid = project
        attrs.fsx_xflags |= FS_XFLAG_PROJINHERIT
        fd = os.open(layer_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.ioctl(fd, FS_IOC_FSSETXATTR, attrs)
        finally:
            os.close(fd)
        blocks = size // 512
        quota = _FsDiskQuota(
            d_version=FS_DQUOT_VERSION,
            d_flags=FS_PROJ_QUOTA,
            d_fieldmask=FS_DQ_BSOFT | FS_DQ_BHARD,
            d_id=project,
            d_blk_hardlimit=blocks,
            d_blk_softlimit=blocks,
        )
        command = (Q_XSETQLIM << 8) | PRJQUOTA
        if _libc.quotactl(command, os.fsencode(self._device()), project, ctypes.byref(quota)) != 0:
            err = ctypes.get_errno()
            raise QuotaNotSupported(
                f"setting an xfs project quota of {size} bytes on {layer_dir} failed: {os.strerror(err)}; "
                f"mount the xfs with prjquota"
            )

    def release(self, layer_dir: Path) -> bool:
        # The directory goes with the layer; its project ID is simply never reused while the driver runs.
        return False
