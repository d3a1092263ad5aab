"""How a deletion is stored: in a layer tar, and on disk for each whiteout format."""

from __future__ import annotations

import enum
import errno
import os
import stat

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
AUFS_META_PREFIX = ".wh..wh."
"""aufs keeps its own bookkeeping (``.wh..wh.plnk``, ``.wh..wh.aufs``, ``.wh..wh.orph``) under this prefix."""

OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"

DRIVER_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.", "user.fuseoverlayfs.", "security.selinux")
"""Xattrs a filesystem or driver keeps for itself; they are never part of a layer's content."""


class WhiteoutFormat(enum.Enum):
    """How a directory on disk records deletions.

    - ``DELETE``: deletions are real, the file is gone (vfs, btrfs, a merged view).
    - ``OVERLAY``: a whiteout is a char device 0/0; an opaque directory has the
      xattr ``trusted.overlay.opaque="y"``.
    - ``AUFS``: a whiteout is an empty file ``.wh.NAME``; an opaque directory
      holds a file ``.wh..wh..opq``.
    """

    DELETE = "delete"
    OVERLAY = "overlay"
    AUFS = "aufs"


def is_aufs_meta(name: str) -> bool:
    """True for aufs's own bookkeeping names, which are neither content nor whiteouts."""
    return name.startswith(AUFS_META_PREFIX) and name != OPAQUE_MARKER


def whited_out_name(name: str, st: os.stat_result, fmt: WhiteoutFormat) -> str | None:
    """The name that the on-disk entry ``name`` deletes, or ``None`` if it is not a whiteout."""
    if fmt is WhiteoutFormat.OVERLAY:
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            return name
    elif fmt is WhiteoutFormat.AUFS and name.startswith(WHITEOUT_PREFIX) and not name.startswith(AUFS_META_PREFIX):
        victim = name[len(WHITEOUT_PREFIX) :]
        return victim if victim not in ("", ".", "..") else None
    return None


def is_opaque_dir(path: str, names: set[str] | None, fmt: WhiteoutFormat) -> bool:
    """True if the directory at ``path`` (holding ``names``, when known) hides its lower layers' children."""
    if fmt is WhiteoutFormat.OVERLAY:
        try:
            return os.getxattr(path, OVERLAY_OPAQUE_XATTR, follow_symlinks=False) == b"y"
        except OSError as exc:
            if exc.errno in (errno.ENODATA, errno.ENOTSUP):
                return False
            raise
    if fmt is WhiteoutFormat.AUFS:
        return OPAQUE_MARKER in names if names is not None else os.path.lexists(os.path.join(path, OPAQUE_MARKER))
    return False
