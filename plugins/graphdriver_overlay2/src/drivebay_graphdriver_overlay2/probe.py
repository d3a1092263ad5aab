"""Can this host run overlay2 with its data at a given home? A real test mount decides.

The checks, in moby's order: overlay in the kernel, a backing fs that can hold
upper dirs, d_type in directory listings (xfs made with ``ftype=0`` lacks it
and overlay then misbehaves), and a test mount with two lowers, an upper and
a work dir, written through.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from drivebay.errors import MountError
from drivebay.fs.backing import backing_filesystem, kernel_filesystems, nearest_existing
from drivebay.fs.mounts import is_mountpoint, unmount
from drivebay_graphdriver_overlay2.mounting import KernelOverlay, OverlayStack

# Filesystems overlayfs can't use for upper dirs, or that moby refuses (by the fs type's first word).
UNSUPPORTED_BACKING = {"overlay", "aufs", "fuse", "fuse3", "zfs", "ecryptfs", "nfs", "nfs4"}
DT_UNKNOWN = 0


class _Dirent(ctypes.Structure):
    # glibc's struct dirent on 64-bit Linux.
    _fields_ = [
        ("d_ino", ctypes.c_uint64),
        ("d_off", ctypes.c_int64),
        ("d_reclen", ctypes.c_ushort),
        ("d_type", ctypes.c_ubyte),
        ("d_name", ctypes.c_char * 256),
    ]


# The process's own libc: find_library would run ldconfig in a subprocess on every start.
_libc = ctypes.CDLL(None, use_errno=True)
_libc.opendir.argtypes = [ctypes.c_char_p]
_libc.opendir.restype = ctypes.c_void_p
_libc.readdir.argtypes = [ctypes.c_void_p]
_libc.readdir.restype = ctypes.POINTER(_Dirent)
_libc.closedir.argtypes = [ctypes.c_void_p]


def supports_d_type(directory: Path) -> bool:
    """Whether listing ``directory`` (which must hold a file) reports entry types."""
    handle = _libc.opendir(os.fsencode(directory))
    if not handle:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(directory))
    try:
        while entry := _libc.readdir(handle):
            if entry.contents.d_name not in (b".", b".."):
                return bool(entry.contents.d_type != DT_UNKNOWN)
        return True
    finally:
        _libc.closedir(handle)


def overlay_in_kernel() -> bool:
    """Whether the kernel knows overlay, loading the module if it must."""
    if "overlay" in kernel_filesystems():
        return True
    if shutil.which("modprobe"):
        subprocess.run(["modprobe", "overlay"], capture_output=True, check=False)
    return "overlay" in kernel_filesystems()


def probe_reason(home: Path) -> str | None:
    """``None`` if kernel overlay works for ``home``, else what is missing; leaves nothing behind."""
    if not overlay_in_kernel():
        return "the kernel has no overlay filesystem"
    fstype = backing_filesystem(home)
    if fstype.split(".")[0] in UNSUPPORTED_BACKING:
        return f"backing fs {fstype} cannot hold overlay upper layers"
    try:
        scratch = Path(tempfile.mkdtemp(prefix=".overlay2-probe-", dir=nearest_existing(home)))
    except OSError as exc:
        return f"cannot make a scratch directory beside {home}: {exc.strerror}"
    try:
        return _probe_in(scratch, fstype)
    finally:
        if is_mountpoint(scratch / "merged"):
            unmount(scratch / "merged", lazy=True)
        shutil.rmtree(scratch, ignore_errors=True)


def _probe_in(scratch: Path, fstype: str) -> str | None:
    for name in ("lower1", "lower2", "upper", "work", "merged"):
        (scratch / name).mkdir()
    (scratch / "lower2" / "from-lower2").write_bytes(b"")
    if not supports_d_type(scratch / "lower2"):
        return f"backing fs {fstype} does not report d_type (xfs made with ftype=0?); overlay needs it"
    rootless = os.geteuid() != 0
    stack = OverlayStack(scratch, ("lower1", "lower2"), "upper", "work")
    try:
        KernelOverlay(userxattr=rootless).mount(stack, scratch / "merged")
    except MountError as exc:
        if rootless:
            return f"not root, and overlay with userxattr failed ({exc}); run as root or set mount_program"
        return f"a test overlay mount on {fstype} failed: {exc}"
    try:
        if not (scratch / "merged" / "from-lower2").exists():
            return "a test overlay mount did not show its lower layers"
        (scratch / "merged" / "written").write_bytes(b"x")
    finally:
        unmount(scratch / "merged")
    return None
