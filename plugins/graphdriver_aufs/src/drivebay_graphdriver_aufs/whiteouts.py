"""Keep branch directories in aufs's whiteout format.

fuse-overlayfs writes aufs-format whiteouts when started with
``FUSE_OVERLAYFS_DISABLE_OVL_WHITEOUT=1``. As a safeguard (an older
fuse-overlayfs, or one started without the variable), stray overlay-format
whiteouts, char 0/0 devices and opaque xattrs, are turned into ``.wh.`` files
at the last unmount and after a crash.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque", "user.fuseoverlayfs.opaque")


def _is_overlay_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _make_marker(path: Path) -> None:
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.close(fd)


def _clear_opaque_xattr(directory: Path) -> bool:
    found = False
    for name in OPAQUE_XATTRS:
        try:
            value = os.getxattr(directory, name, follow_symlinks=False)
        except OSError:
            continue
        os.removexattr(directory, name, follow_symlinks=False)
        found = found or value in (b"y", b"Y")
    return found


def normalise_branch(branch: Path) -> int:
    """Convert overlay-format whiteouts under ``branch`` to aufs format; return how many."""
    converted = 0
    for dirpath, dirnames, filenames in os.walk(branch):
        directory = Path(dirpath)
        if _clear_opaque_xattr(directory):
            _make_marker(directory / OPAQUE_MARKER)
            converted += 1
        for name in filenames:
            path = directory / name
            st = path.lstat()
            if not _is_overlay_whiteout(st):
                continue
            if len(WHITEOUT_PREFIX) + len(name.encode()) > 255:
                raise OSError(
                    f"cannot record the deletion of {path} as an aufs whiteout: the name is longer than 251 bytes"
                )
            path.unlink()
            _make_marker(directory / f"{WHITEOUT_PREFIX}{name}")
            converted += 1
        dirnames.sort()
    return converted
