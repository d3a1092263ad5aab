"""Applying a layer tar to a directory, like moby's ``archive.ApplyLayer``, without ever writing outside it.

Every path is resolved one component at a time from a directory fd of the
root, with ``O_NOFOLLOW``: a symlink among an entry's parents (already in the
root, or made earlier by the same tar) stops the apply with ``UnsafeArchive``
instead of being followed. Files are created with ``O_EXCL | O_NOFOLLOW``
relative to their parent's fd, so a name that exists is replaced, never
written through.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from drivebay.archive.tarformat import (
    BLOCKDEV,
    CHAR,
    DIRECTORY,
    FIFO,
    HARDLINK,
    REGULAR,
    SYMLINK,
    Header,
    TarReader,
)
from drivebay.archive.whiteouts import (
    AUFS_META_PREFIX,
    DRIVER_XATTR_PREFIXES,
    OPAQUE_MARKER,
    OVERLAY_OPAQUE_XATTR,
    WHITEOUT_PREFIX,
    WhiteoutFormat,
)
from drivebay.errors import ArchiveIOError, InvalidArchive, UnsafeArchive

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DEVICE_TYPES = {CHAR: stat.S_IFCHR, BLOCKDEV: stat.S_IFBLK, FIFO: stat.S_IFIFO}
_MAX_CACHED_DIRS = 256
_WRITE_CHUNK = 1 << 20


def member_parts(name: str, what: str = "entry") -> tuple[str, ...]:
    """The path components of a tar member name; refuses absolute names and ``..``.

    ``./`` prefixes, empty and ``.`` components are dropped, so ``./`` is the
    root itself (an empty tuple).
    """
    if name.startswith("/"):
        raise UnsafeArchive(f"layer tar {what} '{name}' is an absolute path; refusing to write outside the layer")
    parts = tuple(name.rstrip("/").split("/"))
    if "" in parts or "." in parts:
        parts = tuple(part for part in parts if part and part != ".")
    if ".." in parts:
        raise UnsafeArchive(f"layer tar {what} '{name}' contains '..'; refusing to write outside the layer")
    if "\x00" in name:
        raise InvalidArchive(f"layer tar {what} {name!r} contains a NUL byte; the layer is corrupt")
    return parts


class _RootDirs:
    """Directory fds below the root, opened without following symlinks and cached by path.

    An fd dropped from the cache is only closed by :meth:`release`, between
    members, so that fds a caller still holds stay valid.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root_fd = os.open(root, _DIR_FLAGS)
        self._fds: dict[tuple[str, ...], int] = {}
        self.retired: list[int] = []
        """Fds dropped from the cache, closed by :meth:`release`."""

    def close(self) -> None:
        self.retired.extend(self._fds.values())
        self._fds.clear()
        self.release()
        os.close(self.root_fd)

    def release(self) -> None:
        """Close the fds dropped from the cache."""
        for fd in self.retired:
            os.close(fd)
        self.retired.clear()

    def forget_under(self, parts: tuple[str, ...]) -> None:
        """Drop the fds of ``parts`` and below, after that directory was removed."""
        depth = len(parts)
        for key in [key for key in self._fds if key[:depth] == parts]:
            self.retired.append(self._fds.pop(key))

    def fd(self, parts: tuple[str, ...], entry: str, create: bool = True) -> int:
        """An fd of directory ``parts``; missing directories are made (0755) when ``create``."""
        if not parts:
            return self.root_fd
        cached = self._fds.get(parts)
        if cached is not None:
            return cached
        parent = self.fd(parts[:-1], entry, create)
        name = parts[-1]
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
            os.mkdir(name, 0o755, dir_fd=parent)
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            if stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
                raise UnsafeArchive(
                    f"layer tar entry '{entry}' has a parent '{'/'.join(parts)}' that is a symlink; "
                    "refusing to write through it"
                ) from exc
            raise InvalidArchive(
                f"layer tar entry '{entry}' has a parent '{'/'.join(parts)}' that is not a directory; "
                "the layer does not fit its parent layer"
            ) from exc
        self.adopt(parts, fd)
        return fd

    def adopt(self, parts: tuple[str, ...], fd: int) -> None:
        """Cache ``fd``, just opened on directory ``parts``."""
        if len(self._fds) >= _MAX_CACHED_DIRS:
            self.retired.extend(self._fds.values())
            self._fds.clear()
        old = self._fds.pop(parts, None)
        if old is not None:
            self.retired.append(old)
        self._fds[parts] = fd


def _remove(parent_fd: int, name: str, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=parent_fd)
    else:
        os.unlink(name, dir_fd=parent_fd)


def _lstat(parent_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _content_xattrs(hdr: Header) -> list[tuple[str, bytes]]:
    # A tar must not plant the bookkeeping of a driver (an overlay redirect or
    # opaque flag) in a layer; the writer never stores those names either.
    if not hdr.xattrs:
        return []
    return [(key, value) for key, value in hdr.xattrs.items() if not key.startswith(DRIVER_XATTR_PREFIXES)]


def _proc_path(parent_fd: int, name: str) -> str:
    # setxattr has no *at form; this magic link names the entry relative to a dir fd.
    return f"/proc/self/fd/{parent_fd}/{name}"


def _current_umask() -> int:
    # Read, not set-and-restore with os.umask(), which would race with other threads.
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    raise ArchiveIOError("cannot read the umask from /proc/self/status; is /proc mounted?")


class _Applier:
    """State of one apply: the dirs, what this tar wrote, and the directory times to set at the end."""

    def __init__(self, root: Path, whiteouts: WhiteoutFormat) -> None:
        self.dirs = _RootDirs(root)
        self.whiteouts = whiteouts
        self.written: set[tuple[str, ...]] = set()
        self.dir_meta: dict[tuple[str, ...], Header] = {}
        self.size = 0
        # Like GNU tar, only root restores owners; anyone else keeps their own.
        self.chown = os.geteuid() == 0
        self.umask = _current_umask()

    def _clear_path(self, parent_fd: int, name: str, parts: tuple[str, ...], st: os.stat_result) -> None:
        _remove(parent_fd, name, st)
        if stat.S_ISDIR(st.st_mode):
            self.dirs.forget_under(parts)
            depth = len(parts)
            for key in [key for key in self.dir_meta if key[:depth] == parts]:
                del self.dir_meta[key]

    def apply(self, reader: TarReader) -> int:
        while (hdr := reader.next()) is not None:
            parts = member_parts(hdr.name)
            if self.dirs.retired:
                self.dirs.release()
            try:
                self._member(hdr, parts, reader)
            except OSError as exc:
                raise ArchiveIOError(
                    f"cannot write layer tar entry '{hdr.name}' into {self.dirs.root} ({exc.strerror})"
                ) from exc
        for parts, hdr in self.dir_meta.items():
            self._finish_dir(parts, hdr)
        return self.size

    def _member(self, hdr: Header, parts: tuple[str, ...], reader: TarReader) -> None:
        if not parts:
            if hdr.type != DIRECTORY:
                raise InvalidArchive(f"layer tar entry '{hdr.name}' names the layer root but is not a directory")
            self._set_xattrs(self.dirs.root_fd, hdr)
            self.dir_meta[parts] = hdr
            return
        name = parts[-1]
        if name.startswith(WHITEOUT_PREFIX) and self.whiteouts is not WhiteoutFormat.AUFS:
            self._whiteout(hdr, parts)
            return
        if name.startswith(AUFS_META_PREFIX) and name != OPAQUE_MARKER:
            return  # aufs bookkeeping, not content
        parent_fd = self.dirs.fd(parts[:-1], hdr.name)
        self.written.add(parts)
        if hdr.type == DIRECTORY:
            self._directory(hdr, parts, parent_fd)
        elif hdr.type == REGULAR:
            self._regular(hdr, parent_fd, name, parts, reader)
        elif hdr.type == HARDLINK:
            self._hardlink(hdr, parent_fd, name, parts)
        elif hdr.type == SYMLINK:
            self._replace(parent_fd, name, parts, lambda: os.symlink(hdr.linkname, name, dir_fd=parent_fd))
            self._set_path_meta(parent_fd, name, hdr, chmod=False)
        else:
            device = os.makedev(hdr.devmajor, hdr.devminor)
            mode = _DEVICE_TYPES[hdr.type] | 0o600
            self._replace(parent_fd, name, parts, lambda: os.mknod(name, mode, device, dir_fd=parent_fd))
            self._set_path_meta(parent_fd, name, hdr, chmod=True)

    def _replace(self, parent_fd: int, name: str, parts: tuple[str, ...], create: Callable[[], None]) -> None:
        try:
            create()
        except FileExistsError:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            self._clear_path(parent_fd, name, parts, st)
            create()

    def _directory(self, hdr: Header, parts: tuple[str, ...], parent_fd: int) -> None:
        name = parts[-1]
        try:
            os.mkdir(name, 0o700, dir_fd=parent_fd)
        except FileExistsError:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                self._clear_path(parent_fd, name, parts, st)
                os.mkdir(name, 0o700, dir_fd=parent_fd)
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        self.dirs.adopt(parts, fd)
        self._set_xattrs(fd, hdr)
        self.dir_meta[parts] = hdr

    def _regular(self, hdr: Header, parent_fd: int, name: str, parts: tuple[str, ...], reader: TarReader) -> None:
        # Created with its final permissions (writable through this fd even if read-only),
        # so that most files need no fchmod.
        perm = hdr.mode & 0o777
        try:
            fd = os.open(name, _FILE_FLAGS, perm, dir_fd=parent_fd)
        except FileExistsError:
            self._clear_path(parent_fd, name, parts, os.stat(name, dir_fd=parent_fd, follow_symlinks=False))
            fd = os.open(name, _FILE_FLAGS, perm, dir_fd=parent_fd)
        try:
            while reader.pending:
                view = reader.read_data(_WRITE_CHUNK)
                written = os.write(fd, view)
                while written < len(view):
                    view = view[written:]
                    written = os.write(fd, view)
            self.size += hdr.size
            if self.chown:
                os.fchown(fd, hdr.uid, hdr.gid)
            # Needed for special bits, bits the umask took, and after fchown cleared setuid/setgid.
            if hdr.mode != perm & ~self.umask:
                os.fchmod(fd, hdr.mode)
            for key, value in _content_xattrs(hdr):
                os.setxattr(fd, key, value)
            os.utime(fd, ns=(hdr.mtime_ns, hdr.mtime_ns))
        finally:
            os.close(fd)

    def _hardlink(self, hdr: Header, parent_fd: int, name: str, parts: tuple[str, ...]) -> None:
        target = member_parts(hdr.linkname, "hardlink target")
        if not target:
            raise UnsafeArchive(f"layer tar hardlink '{hdr.name}' points to the layer root; refusing it")
        if target == parts:
            return
        missing = InvalidArchive(f"layer tar hardlink '{hdr.name}' points to '{hdr.linkname}', which does not exist")
        try:
            target_fd = self.dirs.fd(target[:-1], hdr.name, create=False)
        except FileNotFoundError as exc:
            raise missing from exc

        def link() -> None:
            try:
                os.link(target[-1], name, src_dir_fd=target_fd, dst_dir_fd=parent_fd, follow_symlinks=False)
            except FileNotFoundError as exc:
                raise missing from exc

        self._replace(parent_fd, name, parts, link)

    def _whiteout(self, hdr: Header, parts: tuple[str, ...]) -> None:
        name = parts[-1]
        if name == OPAQUE_MARKER:
            self._opaque(hdr, parts[:-1])
            return
        if name.startswith(AUFS_META_PREFIX):
            return  # aufs bookkeeping, not content
        victim = name[len(WHITEOUT_PREFIX) :]
        if victim in ("", ".", ".."):
            # '.wh..' would delete the directory holding it, '.wh...' its parent.
            raise UnsafeArchive(f"layer tar whiteout '{hdr.name}' names no entry; refusing to delete outside it")
        parent_fd = self.dirs.fd(parts[:-1], hdr.name)
        st = _lstat(parent_fd, victim)
        if st is not None:
            self._clear_path(parent_fd, victim, (*parts[:-1], victim), st)
        if self.whiteouts is WhiteoutFormat.OVERLAY:
            os.mknod(victim, stat.S_IFCHR | 0o600, 0, dir_fd=parent_fd)
            if self.chown:
                os.chown(victim, hdr.uid, hdr.gid, dir_fd=parent_fd, follow_symlinks=False)
            # The writer takes a whiteout's mtime from the device node, so keep the tar's:
            # a layer made from a diff then diffs to the same bytes (the same diff ID).
            os.utime(victim, ns=(hdr.mtime_ns, hdr.mtime_ns), dir_fd=parent_fd, follow_symlinks=False)

    def _opaque(self, hdr: Header, dir_parts: tuple[str, ...]) -> None:
        fd = self.dirs.fd(dir_parts, hdr.name)
        if self.whiteouts is WhiteoutFormat.OVERLAY:
            os.setxattr(fd, OVERLAY_OPAQUE_XATTR, b"y")
            return
        for entry in os.listdir(fd):
            child = (*dir_parts, entry)
            if child not in self.written:
                self._clear_path(fd, entry, child, os.stat(entry, dir_fd=fd, follow_symlinks=False))

    def _set_xattrs(self, fd: int, hdr: Header) -> None:
        for key, value in _content_xattrs(hdr):
            os.setxattr(fd, key, value)

    def _set_path_meta(self, parent_fd: int, name: str, hdr: Header, chmod: bool) -> None:
        if self.chown:
            os.chown(name, hdr.uid, hdr.gid, dir_fd=parent_fd, follow_symlinks=False)
        if chmod:
            os.chmod(name, hdr.mode, dir_fd=parent_fd)
        for key, value in _content_xattrs(hdr):
            os.setxattr(_proc_path(parent_fd, name), key, value, follow_symlinks=False)
        os.utime(name, ns=(hdr.mtime_ns, hdr.mtime_ns), dir_fd=parent_fd, follow_symlinks=False)

    def _finish_dir(self, parts: tuple[str, ...], hdr: Header) -> None:
        # Owner, mode and times of directories come last: writing children changes
        # a directory's mtime, and a read-only mode would stop a non-root apply.
        fd = self.dirs.fd(parts, hdr.name, create=False)
        if self.chown:
            os.fchown(fd, hdr.uid, hdr.gid)
        os.fchmod(fd, hdr.mode)
        os.utime(fd, ns=(hdr.mtime_ns, hdr.mtime_ns))


def apply_layer_tar(tar: BinaryIO, root: Path, whiteouts: WhiteoutFormat) -> int:
    """Extract the uncompressed layer tar ``tar`` into ``root``; return the bytes of regular files written.

    ``.wh.NAME`` members delete NAME and ``.wh..wh..opq`` makes its directory
    opaque, stored the way ``whiteouts`` says (``DELETE``: really deleted;
    ``OVERLAY``: char device 0/0 and the opaque xattr; ``AUFS``: the marker
    files are kept). A member replacing a path of another type removes it
    first; existing directories are kept and get the member's metadata.
    Owner, mode, xattrs and nanosecond mtimes are restored.

    Raises ``UnsafeArchive`` for a member that would write outside ``root``
    (absolute name, ``..``, a symlink among its parents, a hardlink out of the
    layer), ``InvalidArchive`` for a malformed tar and ``ArchiveIOError`` when
    the disk refuses a write. On error, ``root`` is left half-applied; the
    caller removes it. The stream is read to its end.
    """
    reader = TarReader(tar)
    applier = _Applier(root, whiteouts)
    try:
        size = applier.apply(reader)
    finally:
        applier.dirs.close()
    reader.drain()
    return size
