"""Writing layer tars: a whole tree, or a list of changes, in sorted, reproducible order.

Members come in tree order: a directory, then its children sorted by the bytes
of their tar names, each child directory followed by its own subtree. The
same tree therefore always gives the same bytes. Nothing depends on readdir
order, atime, ctime or user names.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from drivebay.archive.entries import inode_header, read_xattrs, tar_type
from drivebay.archive.tarformat import END_OF_ARCHIVE, HARDLINK, REGULAR, Header, encode_header, padding
from drivebay.archive.whiteouts import (
    DRIVER_XATTR_PREFIXES,
    OPAQUE_MARKER,
    WHITEOUT_PREFIX,
    WhiteoutFormat,
    is_aufs_meta,
    is_opaque_dir,
    whited_out_name,
)
from drivebay.errors import ArchiveIOError
from drivebay.hookspecs.graph import Change, ChangeKind

_BUFFER = 1 << 20
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


class LayerTarOutput:
    """Buffers members and writes them to ``out`` in big chunks.

    Inodes with more than one link are written once, as a file, at their
    first name; later names become hardlink members pointing to it.
    """

    def __init__(self, out: BinaryIO, exclude_xattr_prefixes: tuple[str, ...]) -> None:
        self._out = out
        self._exclude = DRIVER_XATTR_PREFIXES + exclude_xattr_prefixes
        # One buffer for the whole tar: files are read straight into it and it is written
        # out when full, so no member costs a fresh allocation or an extra copy.
        self._buffer = bytearray(_BUFFER)
        self._view = memoryview(self._buffer)
        self._pos = 0
        self._links: dict[tuple[int, int], str] = {}

    def _emit(self, data: bytes) -> None:
        end = self._pos + len(data)
        if end > _BUFFER:
            self.flush()
            end = len(data)
        self._view[end - len(data) : end] = data
        self._pos = end

    def flush(self) -> None:
        """Write everything buffered so far."""
        if self._pos:
            self._out.write(self._view[: self._pos])
            self._pos = 0

    def add_header(self, hdr: Header) -> None:
        """A member without data (directory, link, device, whiteout)."""
        self._emit(encode_header(hdr))

    def add_inode(self, name: str, path: str, st: os.stat_result) -> None:
        """The inode ``st`` at ``path`` as member ``name`` (no trailing ``/``); sockets are skipped."""
        typeflag = tar_type(st)
        if typeflag is None:
            return
        if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
            key = (st.st_dev, st.st_ino)
            first = self._links.get(key)
            if first is not None:
                hdr = inode_header(name, path, st, HARDLINK, {})
                hdr.size = 0
                hdr.linkname = first
                self._emit(encode_header(hdr))
                return
            self._links[key] = name
        try:
            if typeflag != REGULAR:
                self._emit(encode_header(inode_header(name, path, st, typeflag, read_xattrs(path, self._exclude))))
                return
            fd = os.open(path, _READ_FLAGS)
            try:
                head = encode_header(inode_header(name, path, st, typeflag, read_xattrs(fd, self._exclude)))
                self._add_file(fd, head, st.st_size, path)
            finally:
                os.close(fd)
        except OSError as exc:
            raise ArchiveIOError(f"cannot read '{path}' into the layer tar ({exc.strerror})") from exc

    def _add_file(self, fd: int, head: bytes, size: int, path: str) -> None:
        self._emit(head)
        left = size
        while left:
            if self._pos == _BUFFER:
                self.flush()
            # Straight into the buffer, up to what is left of the file or of the buffer.
            room = self._view[self._pos : self._pos + min(left, _BUFFER - self._pos)]
            got = os.readv(fd, [room])
            room.release()
            if not got:
                raise ArchiveIOError(f"'{path}' shrank while being archived; stop writers to the layer and retry")
            self._pos += got
            left -= got
        self._emit(padding(size))

    def finish(self) -> None:
        """End the archive (two zero blocks) and write out the buffer."""
        self._emit(END_OF_ARCHIVE)
        self.flush()


def _name_key(name: str) -> bytes:
    # os.fsencode's result, without its Python-level checks (this runs once per entry).
    return name.encode("utf-8", "surrogateescape")


def _whiteout_header(member: str, st: os.stat_result | None) -> Header:
    # Docker writes whiteouts as empty 0600 files; without an on-disk whiteout
    # to copy owner and time from, zeros keep the tar reproducible.
    if st is None:
        return Header(name=member, type=REGULAR, mode=0o600)
    return Header(name=member, type=REGULAR, mode=0o600, uid=st.st_uid, gid=st.st_gid, mtime_ns=st.st_mtime_ns)


def _opaque_header(prefix: str, dir_st: os.stat_result) -> Header:
    # As Docker writes it: the directory's permission bits and owner, mtime 0.
    mode = stat.S_IMODE(dir_st.st_mode)
    return Header(name=prefix + OPAQUE_MARKER, type=REGULAR, mode=mode, uid=dir_st.st_uid, gid=dir_st.st_gid)


def _write_dir(tar: LayerTarOutput, path: str, prefix: str, dir_st: os.stat_result, whiteouts: WhiteoutFormat) -> None:
    with os.scandir(path) as it:
        children = list(it)
    # Only aufs marks opacity with a name; overlay's mark is an xattr of the directory.
    names = {entry.name for entry in children} if whiteouts is WhiteoutFormat.AUFS else None
    if whiteouts is not WhiteoutFormat.DELETE and is_opaque_dir(path, names, whiteouts):
        if whiteouts is WhiteoutFormat.AUFS:
            marker = os.path.join(path, OPAQUE_MARKER)
            tar.add_inode(prefix + OPAQUE_MARKER, marker, os.lstat(marker))
        else:
            tar.add_header(_opaque_header(prefix, dir_st))
    members: list[tuple[bytes, str, os.DirEntry[str], os.stat_result, bool]] = []
    for entry in children:
        name = entry.name
        if whiteouts is WhiteoutFormat.AUFS and (name == OPAQUE_MARKER or is_aufs_meta(name)):
            continue
        st = entry.stat(follow_symlinks=False)
        if whiteouts is WhiteoutFormat.OVERLAY and whited_out_name(name, st, whiteouts) is not None:
            name = WHITEOUT_PREFIX + name
            members.append((_name_key(name), name, entry, st, True))
        else:
            members.append((_name_key(name), name, entry, st, False))
    members.sort(key=lambda member: member[0])
    for _, name, entry, st, is_whiteout in members:
        if is_whiteout:
            tar.add_header(_whiteout_header(prefix + name, st))
            continue
        tar.add_inode(prefix + name, entry.path, st)
        if stat.S_ISDIR(st.st_mode):
            _write_dir(tar, entry.path, prefix + name + "/", st, whiteouts)


def write_tree_tar(
    out: BinaryIO, root: Path, whiteouts: WhiteoutFormat, exclude_xattr_prefixes: tuple[str, ...] = ()
) -> None:
    """Write every entry below ``root`` (not ``root`` itself) to ``out`` as a layer tar.

    On-disk whiteouts of format ``whiteouts`` become ``.wh.NAME`` members and
    opaque directories get a ``.wh..wh..opq`` member right after their own;
    aufs bookkeeping is left out. Xattrs starting with one of
    ``exclude_xattr_prefixes`` (and those drivers keep for themselves) are
    not written. Raises ``ArchiveIOError`` if a file cannot be read.
    """
    tar = LayerTarOutput(out, exclude_xattr_prefixes)
    top = os.fspath(root)
    _write_dir(tar, top, "", os.lstat(top), whiteouts)
    tar.finish()


def _tree_key(member: str) -> tuple[bytes, ...]:
    return tuple(_name_key(part) for part in member.split("/"))


def write_changes_tar(out: BinaryIO, root: Path, changes: Iterable[Change]) -> None:
    """Write the changed paths of ``root`` to ``out`` as a layer tar, like ``docker export`` of a diff.

    Added and modified paths are read from ``root``; every parent directory of
    a change is included, as Docker does. A deleted path (a whole deleted tree
    too) becomes one ``.wh.NAME`` member. Raises ``ArchiveIOError`` if a
    changed path cannot be read.
    """
    members: dict[str, bool] = {}  # member name -> is a whiteout
    for change in changes:
        parts = change.path.strip("/").split("/")
        if parts == [""]:
            continue
        for depth in range(1, len(parts)):
            members.setdefault("/".join(parts[:depth]), False)
        if change.kind is ChangeKind.DELETE:
            members["/".join([*parts[:-1], WHITEOUT_PREFIX + parts[-1]])] = True
        else:
            members["/".join(parts)] = False
    tar = LayerTarOutput(out, ())
    top = os.fspath(root)
    for member in sorted(members, key=_tree_key):
        if members[member]:
            tar.add_header(_whiteout_header(member, None))
            continue
        path = os.path.join(top, member)
        try:
            st = os.lstat(path)
        except OSError as exc:
            raise ArchiveIOError(f"changed path '/{member}' cannot be read in {root} ({exc.strerror})") from exc
        tar.add_inode(member, path, st)
    tar.finish()
