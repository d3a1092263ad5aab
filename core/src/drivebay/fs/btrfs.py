"""btrfs subvolumes, snapshots and qgroups through ioctls (ctypes), not the ``btrfs`` CLI.

Why ioctls: the hot paths (snapshot a layer, delete it) cost one system call
instead of a fork and exec of ``btrfs``; the btrfs graph driver's README has
the measured numbers. Only :func:`btrfs_version` runs the CLI, for status.
The searches of a native diff (:func:`inodes_changed_since`,
:func:`paths_changed_since`, :func:`inode_paths`) are in C
(``_btrfssearch.c``): they handle every item of every leaf written, too
many for Python.

Every function takes paths; every failure is a :class:`~drivebay.errors.BtrfsError`
that names the path and the operation, chained to the ``OSError``.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import os
import struct
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from drivebay.errors import BtrfsError
from drivebay.fs import _btrfssearch

BTRFS_SUPER_MAGIC = 0x9123683E
SUBVOLUME_INODE = 256
"""Inode number of every subvolume's root directory (BTRFS_FIRST_FREE_OBJECTID)."""

ROOT_TREE_ID = 1
QUOTA_TREE_ID = 8
INODE_ITEM_KEY = 1
INODE_REF_KEY = 12
INODE_EXTREF_KEY = 13
ROOT_REF_KEY = 156
QGROUP_STATUS_KEY = 240
QGROUP_INFO_KEY = 242

_SUBVOL_RDONLY = 1 << 1
_ROOT_SUBVOL_RDONLY = 1 << 0  # the same flag as stored in the root item
_QUOTA_CTL_ENABLE = 1
_QGROUP_LIMIT_MAX_RFER = 1 << 0
_MAX_U64 = (1 << 64) - 1


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (0x94 << 8) | nr


class _VolArgs(ctypes.Structure):
    _fields_ = [("fd", ctypes.c_int64), ("name", ctypes.c_char * 4088)]


class _VolArgsV2(ctypes.Structure):
    _fields_ = [
        ("fd", ctypes.c_int64),
        ("transid", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
        ("unused", ctypes.c_uint64 * 4),
        ("name", ctypes.c_char * 4040),
    ]


class _InoLookupArgs(ctypes.Structure):
    _fields_ = [("treeid", ctypes.c_uint64), ("objectid", ctypes.c_uint64), ("name", ctypes.c_char * 4080)]


class _QuotaCtlArgs(ctypes.Structure):
    _fields_ = [("cmd", ctypes.c_uint64), ("status", ctypes.c_uint64)]


class _QgroupLimitArgs(ctypes.Structure):
    _fields_ = [
        ("qgroupid", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
        ("max_rfer", ctypes.c_uint64),
        ("max_excl", ctypes.c_uint64),
        ("rsv_rfer", ctypes.c_uint64),
        ("rsv_excl", ctypes.c_uint64),
    ]


class _SearchKey(ctypes.Structure):
    _fields_ = [
        ("tree_id", ctypes.c_uint64),
        ("min_objectid", ctypes.c_uint64),
        ("max_objectid", ctypes.c_uint64),
        ("min_offset", ctypes.c_uint64),
        ("max_offset", ctypes.c_uint64),
        ("min_transid", ctypes.c_uint64),
        ("max_transid", ctypes.c_uint64),
        ("min_type", ctypes.c_uint32),
        ("max_type", ctypes.c_uint32),
        ("nr_items", ctypes.c_uint32),
        ("unused", ctypes.c_uint32),
        ("unused1", ctypes.c_uint64 * 4),
    ]


class _Timespec(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_uint64), ("nsec", ctypes.c_uint32)]


class _SubvolInfoArgs(ctypes.Structure):
    _fields_ = [
        ("treeid", ctypes.c_uint64),
        ("name", ctypes.c_char * 256),
        ("parent_id", ctypes.c_uint64),
        ("dirid", ctypes.c_uint64),
        ("generation", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
        ("uuid", ctypes.c_ubyte * 16),
        ("parent_uuid", ctypes.c_ubyte * 16),
        ("received_uuid", ctypes.c_ubyte * 16),
        ("ctransid", ctypes.c_uint64),
        ("otransid", ctypes.c_uint64),
        ("stransid", ctypes.c_uint64),
        ("rtransid", ctypes.c_uint64),
        ("ctime", _Timespec),
        ("otime", _Timespec),
        ("stime", _Timespec),
        ("rtime", _Timespec),
        ("reserved", ctypes.c_uint64 * 8),
    ]


_IOC_SYNC = _ioc(0, 8, 0)
_IOC_SUBVOL_CREATE = _ioc(1, 14, ctypes.sizeof(_VolArgs))
_IOC_SNAP_DESTROY = _ioc(1, 15, ctypes.sizeof(_VolArgs))
_IOC_TREE_SEARCH_V2 = _ioc(3, 17, ctypes.sizeof(_SearchKey) + 8)
_IOC_INO_LOOKUP = _ioc(3, 18, ctypes.sizeof(_InoLookupArgs))
_IOC_SNAP_CREATE_V2 = _ioc(1, 23, ctypes.sizeof(_VolArgsV2))
_IOC_SUBVOL_GETFLAGS = _ioc(2, 25, 8)
_IOC_SUBVOL_SETFLAGS = _ioc(1, 26, 8)
_IOC_QUOTA_CTL = _ioc(3, 40, ctypes.sizeof(_QuotaCtlArgs))
_IOC_QGROUP_LIMIT = _ioc(2, 43, ctypes.sizeof(_QgroupLimitArgs))  # _IOR in linux/btrfs.h, although it writes
_IOC_QUOTA_RESCAN_WAIT = _ioc(0, 46, 0)
_IOC_GET_SUBVOL_INFO = _ioc(2, 60, ctypes.sizeof(_SubvolInfoArgs))

_SEARCH_HEADER = struct.Struct("<QQQII")


class _StatFs(ctypes.Structure):
    # Only f_type is read; the padding covers the rest of struct statfs on every Linux ABI.
    _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 256)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.statfs.argtypes = [ctypes.c_char_p, ctypes.POINTER(_StatFs)]


@contextmanager
def _opened(path: Path, what: str) -> Iterator[int]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise BtrfsError(f"{what} {path}: cannot open it: {exc.strerror}") from exc
    try:
        yield fd
    finally:
        os.close(fd)


def _ioctl(fd: int, request: int, arg: ctypes.Structure | bytearray | int, what: str, path: Path) -> None:
    try:
        fcntl.ioctl(fd, request, arg)
    except OSError as exc:
        hint = " (is it on btrfs?)" if exc.errno in (errno.ENOTTY, errno.EINVAL) else ""
        raise BtrfsError(f"{what} {path} failed: {exc.strerror}{hint}") from exc


def _name_bytes(path: Path, limit: int) -> bytes:
    name = os.fsencode(path.name)
    if not name or len(name) >= limit:
        raise BtrfsError(f"subvolume name of {path} must be 1 to {limit - 1} bytes")
    return name


def is_btrfs(path: Path) -> bool:
    """Whether ``path`` (which must exist) is on a btrfs filesystem (statfs magic)."""
    buf = _StatFs()
    if _libc.statfs(os.fsencode(path), ctypes.byref(buf)) != 0:
        err = ctypes.get_errno()
        raise BtrfsError(f"statfs {path} failed: {os.strerror(err)}") from OSError(err, os.strerror(err))
    return bool((buf.f_type & 0xFFFFFFFF) == BTRFS_SUPER_MAGIC)


def is_subvolume(path: Path) -> bool:
    """Whether ``path`` is the root directory of a btrfs subvolume."""
    st = os.lstat(path)
    return st.st_ino == SUBVOLUME_INODE and is_btrfs(path)


def create_subvolume(path: Path) -> None:
    """Create an empty subvolume at ``path`` (which must not exist)."""
    args = _VolArgs(name=_name_bytes(path, 4088))
    with _opened(path.parent, "create subvolume in") as fd:
        _ioctl(fd, _IOC_SUBVOL_CREATE, args, "create subvolume", path)


def snapshot(source: Path, dest: Path, readonly: bool) -> None:
    """Snapshot subvolume ``source`` as a new subvolume ``dest``, read-only or writable."""
    args = _VolArgsV2(flags=_SUBVOL_RDONLY if readonly else 0, name=_name_bytes(dest, 4040))
    with _opened(source, "snapshot") as src_fd, _opened(dest.parent, "snapshot into") as dest_fd:
        args.fd = src_fd
        _ioctl(dest_fd, _IOC_SNAP_CREATE_V2, args, f"snapshot {source} as", dest)


def is_readonly(path: Path) -> bool:
    """Whether subvolume ``path`` carries the read-only flag."""
    flags = bytearray(8)
    with _opened(path, "read flags of") as fd:
        _ioctl(fd, _IOC_SUBVOL_GETFLAGS, flags, "read flags of subvolume", path)
    return bool(int.from_bytes(flags, "little") & _SUBVOL_RDONLY)


def set_readonly(path: Path, readonly: bool) -> None:
    """Set or clear the read-only flag of subvolume ``path``."""
    flags = bytearray(8)
    with _opened(path, "set flags of") as fd:
        _ioctl(fd, _IOC_SUBVOL_GETFLAGS, flags, "read flags of subvolume", path)
        value = int.from_bytes(flags, "little")
        value = value | _SUBVOL_RDONLY if readonly else value & ~_SUBVOL_RDONLY
        _ioctl(fd, _IOC_SUBVOL_SETFLAGS, bytearray(value.to_bytes(8, "little")), "set flags of subvolume", path)


def subvolume_id(path: Path) -> int:
    """The tree ID of the subvolume holding ``path``."""
    args = _InoLookupArgs(treeid=0, objectid=SUBVOLUME_INODE)
    with _opened(path, "look up subvolume of") as fd:
        _ioctl(fd, _IOC_INO_LOOKUP, args, "look up subvolume of", path)
    return int(args.treeid)


@dataclass(frozen=True)
class SubvolumeInfo:
    """What ``BTRFS_IOC_GET_SUBVOL_INFO`` says about a subvolume.

    ``otransid`` is the transaction that created it (a snapshot's point in
    time); ``generation`` the last transaction that changed it.
    """

    id: int
    parent_id: int
    generation: int
    otransid: int
    uuid: bytes
    parent_uuid: bytes
    readonly: bool


def subvolume_info(path: Path) -> SubvolumeInfo:
    """Facts about the subvolume whose root is ``path``."""
    args = _SubvolInfoArgs()
    with _opened(path, "read subvolume info of") as fd:
        _ioctl(fd, _IOC_GET_SUBVOL_INFO, args, "read subvolume info of", path)
    return SubvolumeInfo(
        id=int(args.treeid),
        parent_id=int(args.parent_id),
        generation=int(args.generation),
        otransid=int(args.otransid),
        uuid=bytes(args.uuid),
        parent_uuid=bytes(args.parent_uuid),
        readonly=bool(args.flags & _ROOT_SUBVOL_RDONLY),
    )


@dataclass(frozen=True)
class SearchItem:
    """One item found by :func:`tree_search`: its key, the leaf's generation and its bytes."""

    objectid: int
    type: int
    offset: int
    transid: int
    data: bytes


_SEARCH_BUFFER = 256 * 1024


class _Search:
    """``BTRFS_IOC_TREE_SEARCH_V2`` over a key range, one buffer of results at a time."""

    START = ctypes.sizeof(_SearchKey) + 8

    def __init__(
        self,
        tree_id: int,
        min_key: tuple[int, int, int],
        max_key: tuple[int, int, int],
        min_transid: int,
    ) -> None:
        # 16 bytes of slack after the kernel's buffer, so a fixed-size read at any item never runs off the end.
        self.args = bytearray(self.START + _SEARCH_BUFFER + 16)
        struct.pack_into("<Q", self.args, ctypes.sizeof(_SearchKey), _SEARCH_BUFFER)
        self.tree_id = tree_id
        self.next_key: tuple[int, int, int] | None = min_key
        self.max_key = max_key
        self.min_transid = min_transid

    def fetch(self, fd: int, path: Path) -> int:
        """Fill ``args`` with the next items; returns how many (0: done). Call :meth:`resume_after` next."""
        if self.next_key is None:
            return 0
        key = _SearchKey.from_buffer(self.args)
        key.tree_id = self.tree_id
        key.min_objectid, key.min_type, key.min_offset = self.next_key
        key.max_objectid, key.max_type, key.max_offset = self.max_key
        key.min_transid, key.max_transid = self.min_transid, _MAX_U64
        key.nr_items = 0xFFFFFFFF
        _ioctl(fd, _IOC_TREE_SEARCH_V2, self.args, "search btrfs tree of", path)
        count = int(key.nr_items)
        del key  # a live ctypes view would pin the buffer
        return count

    def resume_after(self, objectid: int, type_: int, offset: int) -> None:
        """Make the next :meth:`fetch` start just after the last key returned."""
        if offset < _MAX_U64:
            offset += 1
        elif type_ < 255:
            type_, offset = type_ + 1, 0
        elif objectid < _MAX_U64:
            objectid, type_, offset = objectid + 1, 0, 0
        else:
            self.next_key = None
            return
        self.next_key = (objectid, type_, offset) if (objectid, type_, offset) <= self.max_key else None


def tree_search(
    path: Path,
    tree_id: int,
    *,
    min_key: tuple[int, int, int] = (0, 0, 0),
    max_key: tuple[int, int, int] = (_MAX_U64, 255, _MAX_U64),
    min_transid: int = 0,
) -> Iterator[SearchItem]:
    """Items of tree ``tree_id`` (0: the subvolume holding ``path``) between two keys.

    Keys are ``(objectid, type, offset)``, compared in that order (so a key
    range does not filter by type). With ``min_transid`` the kernel skips every
    node and leaf not written since that transaction; the items of a leaf that
    was written are all returned, changed or not.
    """
    search = _Search(tree_id, min_key, max_key, min_transid)
    args = search.args
    with _opened(path, "search tree of") as fd:
        while count := search.fetch(fd, path):
            pos = _Search.START
            for _ in range(count):
                transid, objectid, offset, type_, length = _SEARCH_HEADER.unpack_from(args, pos)
                pos += 32
                yield SearchItem(objectid, type_, offset, transid, bytes(args[pos : pos + length]))
                pos += length
            search.resume_after(objectid, type_, offset)


def inodes_changed_since(subvolume: Path, transid: int, origin: Path | None = None) -> list[int]:
    """Inode numbers of ``subvolume`` whose inode item was written after transaction ``transid``.

    As ``btrfs subvolume find-new`` does for file data: only tree blocks
    written since are read, so the cost follows the change. Writes not yet
    on disk are not seen: :func:`sync` first.

    With ``origin``, the subvolume ``subvolume`` was snapshotted from in
    ``transid`` and unchanged since, inodes that were only read are left out:
    those whose item in ``origin`` is the same but for its atime (reading a
    file or listing a directory writes its inode item; a change of anything
    else also changes its ctime or change counter). Only inodes whose atime is
    newer than their ctime are looked up in ``origin``.
    """
    with _opened(subvolume, "search tree of") as fd:
        if origin is None:
            return _search_changed(fd, transid, -1, subvolume)
        with _opened(origin, "search tree of") as origin_fd:
            return _search_changed(fd, transid, origin_fd, subvolume)


def _search_changed(fd: int, transid: int, origin_fd: int, subvolume: Path) -> list[int]:
    # In C: a diff after scattered changes reads every item of every leaf written since
    # (~80,000 for drivebay bench's data), which cost ~20 ms to parse in Python.
    try:
        return _btrfssearch.changed_inodes(fd, transid, origin_fd)
    except OSError as exc:
        hint = " (is it on btrfs?)" if exc.errno in (errno.ENOTTY, errno.EINVAL) else ""
        raise BtrfsError(f"search btrfs tree of {subvolume} failed: {exc.strerror}{hint}") from exc


def paths_changed_since(subvolume: Path, transid: int, origin: Path | None = None) -> list[str]:
    """Every path (hard link) of each inode :func:`inodes_changed_since` finds, relative to the root ("": the root).

    An inode's names are read from its name items in the leaves the search
    returns anyway, and each directory above them is looked up once, instead
    of a path walk to the root per inode (``BTRFS_IOC_INO_PATHS``). An inode
    with fewer names there than links (a name item in a leaf not written since)
    is resolved as :func:`inode_paths` does.
    """
    with _opened(subvolume, "search tree of") as fd:
        if origin is None:
            paths, unresolved = _search_paths(fd, transid, -1, subvolume)
        else:
            with _opened(origin, "search tree of") as origin_fd:
                paths, unresolved = _search_paths(fd, transid, origin_fd, subvolume)
        for found in _inode_paths(fd, subvolume, unresolved).values():
            paths.extend(found)
    return paths


def _search_paths(fd: int, transid: int, origin_fd: int, subvolume: Path) -> tuple[list[str], list[int]]:
    try:
        return _btrfssearch.changed_paths(fd, transid, origin_fd)
    except OSError as exc:
        raise BtrfsError(f"search btrfs tree of {subvolume} failed: {exc.strerror}") from exc


def inode_paths(subvolume: Path, inodes: Sequence[int]) -> dict[int, list[str]]:
    """Every path (hard link) of each inode inside ``subvolume``, relative to its root."""
    with _opened(subvolume, "resolve inodes in") as fd:
        return _inode_paths(fd, subvolume, inodes)


def _inode_paths(fd: int, subvolume: Path, inodes: Sequence[int]) -> dict[int, list[str]]:
    try:
        resolved = _btrfssearch.inode_paths(fd, inodes)
    except OSError as exc:
        raise BtrfsError(f"resolve inodes in {subvolume} failed: {exc.strerror}") from exc
    # None: more names than the kernel's 4 KiB (many hard links, or long paths).
    return {
        inode: paths if paths is not None else _paths_from_refs(fd, subvolume, inode)
        for inode, paths in zip(inodes, resolved, strict=True)
    }


def _paths_from_refs(fd: int, subvolume: Path, inode: int) -> list[str]:
    """Every path of ``inode``, from its name items (``INODE_REF``, ``INODE_EXTREF``) and its directories' paths."""
    names: list[tuple[int, bytes]] = []
    for item in tree_search(
        subvolume, 0, min_key=(inode, INODE_REF_KEY, 0), max_key=(inode, INODE_EXTREF_KEY, _MAX_U64)
    ):
        pos, data = 0, item.data
        while pos < len(data):
            if item.type == INODE_REF_KEY:  # index, name_len, name; the directory is the key's offset
                directory = item.offset
                (length,) = struct.unpack_from("<H", data, pos + 8)
                pos += 10
            else:  # INODE_EXTREF: directory, index, name_len, name
                directory, _, length = struct.unpack_from("<QQH", data, pos)
                pos += 18
            names.append((directory, data[pos : pos + length]))
            pos += length
    directories: dict[int, str] = {}
    for directory, _ in names:
        if directory not in directories:
            args = _InoLookupArgs(treeid=0, objectid=directory)
            _ioctl(fd, _IOC_INO_LOOKUP, args, f"look up directory {directory} in", subvolume)
            directories[directory] = os.fsdecode(args.name)
    return [directories[directory] + os.fsdecode(name) for directory, name in names]


def child_subvolumes(path: Path) -> list[Path]:
    """Subvolumes directly nested in subvolume ``path`` (not deeper ones)."""
    parent_id = subvolume_id(path)
    children = []
    for item in tree_search(
        path, ROOT_TREE_ID, min_key=(parent_id, ROOT_REF_KEY, 0), max_key=(parent_id, ROOT_REF_KEY, _MAX_U64)
    ):
        if item.type != ROOT_REF_KEY or item.objectid != parent_id:
            continue
        dirid, _, name_len = struct.unpack_from("<QQH", item.data, 0)
        name = os.fsdecode(item.data[18 : 18 + name_len])
        args = _InoLookupArgs(treeid=parent_id, objectid=dirid)
        with _opened(path, "look up directory in") as fd:
            _ioctl(fd, _IOC_INO_LOOKUP, args, f"look up directory {dirid} in", path)
        children.append(path / os.fsdecode(args.name) / name)
    return children


def delete_subvolume(path: Path) -> None:
    """Delete subvolume ``path`` and, first, every subvolume nested in it at any depth.

    A read-only subvolume that holds nested ones is made writable first, since
    the kernel cannot unlink a child from a read-only parent.
    """
    nested = child_subvolumes(path)
    if nested and is_readonly(path):
        set_readonly(path, False)
    for child in nested:
        delete_subvolume(child)
    args = _VolArgs(name=_name_bytes(path, 4088))
    with _opened(path.parent, "delete subvolume in") as fd:
        _ioctl(fd, _IOC_SNAP_DESTROY, args, "delete subvolume", path)


def enable_quota(path: Path) -> None:
    """Turn on qgroups for the filesystem holding ``path``; a no-op when they are on.

    Waits for the initial rescan, so usage figures are right afterwards.
    """
    if quota_enabled(path):
        return
    with _opened(path, "enable quota on") as fd:
        _ioctl(fd, _IOC_QUOTA_CTL, _QuotaCtlArgs(cmd=_QUOTA_CTL_ENABLE), "enable quota on the btrfs holding", path)
        _ioctl(fd, _IOC_QUOTA_RESCAN_WAIT, 0, "wait for the quota rescan of", path)


def quota_enabled(path: Path) -> bool:
    """Whether qgroups are on for the filesystem holding ``path``."""
    try:
        next(tree_search(path, QUOTA_TREE_ID, max_key=(0, QGROUP_STATUS_KEY, 0)), None)
    except BtrfsError as exc:
        if isinstance(exc.__cause__, OSError) and exc.__cause__.errno == errno.ENOENT:
            return False
        raise
    return True


def set_qgroup_limit(path: Path, size_bytes: int) -> None:
    """Limit what subvolume ``path`` refers to (its qgroup's ``max_rfer``) to ``size_bytes``."""
    args = _QgroupLimitArgs(qgroupid=0, flags=_QGROUP_LIMIT_MAX_RFER, max_rfer=size_bytes)
    with _opened(path, "limit qgroup of") as fd:
        _ioctl(fd, _IOC_QGROUP_LIMIT, args, f"set a {size_bytes}-byte qgroup limit on", path)


@dataclass(frozen=True)
class QgroupUsage:
    """Bytes a subvolume's qgroup refers to, and those only it holds; ``limit`` is ``None`` if unlimited."""

    referenced: int
    exclusive: int
    limit: int | None


def qgroup_usage(path: Path) -> QgroupUsage:
    """Usage and limit of subvolume ``path``'s qgroup, after committing pending writes."""
    qgroup = subvolume_id(path)
    sync(path)
    referenced = exclusive = 0
    limit = None
    for item in tree_search(path, QUOTA_TREE_ID, min_key=(0, QGROUP_INFO_KEY, qgroup), max_key=(0, 244, qgroup)):
        if item.offset != qgroup:
            continue
        if item.type == QGROUP_INFO_KEY:
            _, referenced, _, exclusive = struct.unpack_from("<QQQQ", item.data, 0)
        elif item.type == 244:  # BTRFS_QGROUP_LIMIT_KEY: flags, max_rfer, max_excl, ...
            flags, max_rfer = struct.unpack_from("<QQ", item.data, 0)
            limit = max_rfer if flags & _QGROUP_LIMIT_MAX_RFER else None
    return QgroupUsage(referenced=referenced, exclusive=exclusive, limit=limit)


def sync(path: Path) -> None:
    """Write out dirty data and commit the current transaction of the filesystem holding ``path``."""
    with _opened(path, "sync") as fd:
        _ioctl(fd, _IOC_SYNC, 0, "sync btrfs holding", path)


@functools.cache
def btrfs_version() -> str:
    """The btrfs-progs version (``v6.2``), or why it is unknown."""
    try:
        out = subprocess.run(["btrfs", "--version"], check=True, capture_output=True, text=True).stdout
    except FileNotFoundError:
        return "unknown (btrfs-progs not installed)"
    except subprocess.CalledProcessError as exc:
        raise BtrfsError(f"'btrfs --version' failed: {exc.stderr.strip()}") from exc
    return out.split()[-1] if out.split() else "unknown"
