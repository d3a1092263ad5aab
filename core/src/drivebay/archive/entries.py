"""Reading an inode into a tar header: type, owner, mode, times, xattrs, link target."""

from __future__ import annotations

import os
import stat

from drivebay.archive.tarformat import BLOCKDEV, CHAR, DIRECTORY, FIFO, REGULAR, SYMLINK, Header

_TYPES = {
    stat.S_IFREG: REGULAR,
    stat.S_IFDIR: DIRECTORY,
    stat.S_IFLNK: SYMLINK,
    stat.S_IFCHR: CHAR,
    stat.S_IFBLK: BLOCKDEV,
    stat.S_IFIFO: FIFO,
}


def read_xattrs(source: str | int, exclude_prefixes: tuple[str, ...]) -> dict[str, bytes]:
    """The xattrs of ``source`` (a path, not followed if a symlink, or an open fd), minus excluded prefixes.

    Only the names this process may read are listed by the kernel (``trusted.*``
    needs root), so what is returned is what is readable.
    """
    names = os.listxattr(source, follow_symlinks=False) if isinstance(source, str) else os.listxattr(source)
    if not names:
        return {}
    wanted = sorted(name for name in names if not name.startswith(exclude_prefixes))
    if isinstance(source, str):
        return {name: os.getxattr(source, name, follow_symlinks=False) for name in wanted}
    return {name: os.getxattr(source, name) for name in wanted}


def tar_type(st: os.stat_result) -> bytes | None:
    """The tar typeflag for an inode, or ``None`` for a socket (tar cannot hold one; Docker skips them)."""
    return _TYPES.get(stat.S_IFMT(st.st_mode))


def inode_header(name: str, path: str, st: os.stat_result, typeflag: bytes, xattrs: dict[str, bytes]) -> Header:
    """The header for the inode ``st`` found at ``path``, to be stored as ``name``.

    Directory names get their trailing ``/`` here; uname and gname stay empty
    so that the tar depends on nothing but the tree.
    """
    hdr = Header(
        name=name + "/" if typeflag == DIRECTORY else name,
        type=typeflag,
        mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
        size=st.st_size if typeflag == REGULAR else 0,
        mtime_ns=st.st_mtime_ns,
        xattrs=xattrs,
    )
    if typeflag == SYMLINK:
        hdr.linkname = os.readlink(path)
    elif typeflag in (CHAR, BLOCKDEV):
        hdr.devmajor = os.major(st.st_rdev)
        hdr.devminor = os.minor(st.st_rdev)
    return hdr
