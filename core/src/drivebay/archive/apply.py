"""Applying a layer tar to a directory, like moby's ``archive.ApplyLayer``, without ever writing outside it.

Every entry's parent is resolved one component at a time from a directory fd
of the root, with ``O_NOFOLLOW``: a symlink among an entry's parents (already
in the root, or made earlier by the same tar) stops the apply with
``UnsafeArchive`` instead of being followed. libarchive then creates the entry
with ``O_EXCL | O_NOFOLLOW`` (replacing, never writing through, a name that
exists) and restores its metadata. Python does per member only what safety
and the layer format need, because per-member Python work is what made the
pure-Python apply about twice as slow as GNU tar.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import stat
import threading
from ctypes import byref, c_char_p, c_size_t, c_void_p
from pathlib import Path
from typing import Any, BinaryIO

from drivebay.archive import libarchive_bindings as la
from drivebay.archive.tarformat import DIRECTORY, REGULAR, Header
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
_MAX_CACHED_DIRS = 256
# No SECURE_SYMLINKS: it re-walks every parent with three syscalls per component, and
# _RootDirs has already refused symlink parents. NO_AUTODIR: _RootDirs made the parents.
_EXTRACT_FLAGS = (
    la.EXTRACT_PERM
    | la.EXTRACT_TIME
    | la.EXTRACT_XATTR
    | la.EXTRACT_SECURE_NODOTDOT
    | la.EXTRACT_SECURE_NOABSOLUTEPATHS
    | la.EXTRACT_NO_AUTODIR
)
_FORMAT_ERRNOS = (errno.EILSEQ, -1, 0)
"""libarchive's ARCHIVE_ERRNO_FILE_FORMAT and ARCHIVE_ERRNO_MISC: the tar is bad, not the disk."""
_CLONE_FS = 0x200
_libc = ctypes.CDLL(None, use_errno=True)


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

    @property
    def cached_fds(self) -> dict[tuple[str, ...], int]:
        """The cached fds by directory (the root is not among them); for lookups only."""
        return self._fds

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


def _decode(raw: bytes | None) -> str:
    return (raw or b"").decode("utf-8", "surrogateescape")


def _entry_xattrs(entry: int) -> dict[str, bytes]:
    """All xattrs of a libarchive entry (its iterator is reset first)."""
    xattrs: dict[str, bytes] = {}
    name, value, size = c_char_p(), c_void_p(), c_size_t()
    for _ in range(la.entry_xattr_reset(entry)):
        la.entry_xattr_next(entry, byref(name), byref(value), byref(size))
        xattrs[_decode(name.value)] = ctypes.string_at(value, size.value) if value.value else b""
    return xattrs


def _drop_driver_xattrs(entry: int) -> None:
    # The same rule as _content_xattrs, for the entries libarchive writes itself.
    if not la.entry_xattr_reset(entry):
        return
    xattrs = _entry_xattrs(entry)
    kept = {key: value for key, value in xattrs.items() if not key.startswith(DRIVER_XATTR_PREFIXES)}
    if len(kept) != len(xattrs):
        la.entry_xattr_clear(entry)
        for key, value in kept.items():
            la.entry_xattr_add_entry(entry, key.encode("utf-8", "surrogateescape"), value, len(value))


def _entry_header(entry: int, name: str, typeflag: bytes) -> Header:
    """The metadata of a libarchive entry that apply sets itself (directories, whiteouts)."""
    return Header(
        name=name,
        type=typeflag,
        mode=la.entry_perm(entry) & 0o7777,
        uid=la.entry_uid(entry),
        gid=la.entry_gid(entry),
        mtime_ns=la.entry_mtime(entry) * 1_000_000_000 + la.entry_mtime_nsec(entry),
        xattrs=_entry_xattrs(entry),
    )


class _StreamSource:
    """Feeds a Python stream to libarchive through one reused buffer, keeping the first error the stream raised.

    Reading into the same buffer, rather than into a new 1 MiB bytes object
    per read, spares the page faults of fresh memory. libarchive lets go of a
    buffer when it asks for the next one.
    """

    CHUNK = 1 << 20

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._buffer = bytearray(self.CHUNK)
        self._view = memoryview(self._buffer)
        self._c_buffer = (ctypes.c_char * self.CHUNK).from_buffer(self._buffer)
        self._address = ctypes.addressof(self._c_buffer)
        self._filled = -1
        self.error: BaseException | None = None
        self.callback = la.READ_CALLBACK(self._read)

    def fill(self) -> int:
        """Read the next chunk into the buffer; its length, 0 at the end of the stream."""
        readinto = getattr(self._stream, "readinto", None)
        if readinto is not None:
            return int(readinto(self._view) or 0)
        data = self._stream.read(self.CHUNK)
        self._buffer[: len(data)] = data
        return len(data)

    def prefetch(self) -> int:
        """Read the first chunk ahead (to tell an empty stream apart); libarchive gets it first."""
        self._filled = self.fill()
        return self._filled

    def _read(self, _archive: int, _client: int, buffer: Any) -> int:
        try:
            size = self._filled if self._filled >= 0 else self.fill()
            self._filled = -1
        except BaseException as exc:  # handed back to the caller by failure(); C cannot unwind Python
            self.error = exc
            return -1
        buffer[0] = self._address
        return size

    def close(self) -> None:
        """Release the buffer, once libarchive is done with it."""
        del self._c_buffer
        self._view.release()

    def failure(self, archive: int) -> BaseException:
        """The error to raise after libarchive's read side failed."""
        if self.error is not None:
            return self.error
        message = _decode(la.error_string(archive))
        if "Unrecognized archive format" in message:
            return InvalidArchive(
                f"the layer stream is not a tar (libarchive: {message}): no header with a valid checksum; "
                "check that the file is an uncompressed, gzip or zstd layer tar"
            )
        return InvalidArchive(
            f"the layer tar is truncated or corrupt (libarchive: {message}); fetch or rebuild the layer"
        )


class _Applier:
    """State of one apply: the dirs, what this tar wrote, and the directory times to set at the end.

    libarchive reads the tar and writes every member but directories and
    whiteouts (``archive_read_extract2``: create, data, owner, mode, xattrs,
    times, in C). Python checks each name first, resolves its parent with
    :class:`_RootDirs` (which refuses symlink parents), and handles what
    libarchive does not know: whiteouts, opaque directories, driver xattrs
    and replacing a whole directory.
    """

    def __init__(self, root: Path, whiteouts: WhiteoutFormat) -> None:
        self.dirs = _RootDirs(root)
        self.whiteouts = whiteouts
        self.written: set[tuple[str, ...]] = set()
        self.dir_meta: dict[tuple[str, ...], Header] = {}
        self.size = 0
        # Like GNU tar, only root restores owners; anyone else keeps their own.
        self.chown = os.geteuid() == 0

    def _clear_path(self, parent_fd: int, name: str, parts: tuple[str, ...], st: os.stat_result) -> None:
        _remove(parent_fd, name, st)
        if stat.S_ISDIR(st.st_mode):
            self.dirs.forget_under(parts)
            depth = len(parts)
            for key in [key for key in self.dir_meta if key[:depth] == parts]:
                del self.dir_meta[key]

    def apply(self, archive: int, source: _StreamSource) -> int:
        disk = la.write_disk_new()
        flags = _EXTRACT_FLAGS | (la.EXTRACT_OWNER if self.chown else 0)
        la.write_disk_set_options(disk, flags)
        try:
            self._members(archive, disk, source)
        finally:
            la.write_close(disk)
            la.write_free(disk)
        for parts, hdr in self.dir_meta.items():
            self._finish_dir(parts, hdr)
        return self.size

    def _members(self, archive: int, disk: int, source: _StreamSource) -> None:
        # The loop every member goes through, so calls are bound to locals. A plain file,
        # symlink or device whose parent's fd is cached takes the short way: it needs no
        # Python but the name check. Anything else goes through _member.
        entry_p = c_void_p()
        entry_ref = byref(entry_p)
        next_header, pathname, filetype_of, hardlink_of = (
            la.read_next_header,
            la.entry_pathname,
            la.entry_filetype,
            la.entry_hardlink,
        )
        xattr_count, size_of, extract = la.entry_xattr_count, la.entry_size, la.read_extract2
        dirs, dir_meta, written = self.dirs, self.dir_meta, self.written
        cached, root_fd = dirs.cached_fds, dirs.root_fd
        while (rc := next_header(archive, entry_ref)) != la.EOF:
            if rc != la.OK:
                raise source.failure(archive)
            entry: int = entry_p.value  # type: ignore[assignment]
            name = (pathname(entry) or b"").decode("utf-8", "surrogateescape")
            if name[:1] in ("", "/", ".") or "/." in name or "//" in name:
                parts = member_parts(name)
            else:
                parts = tuple(name.rstrip("/").split("/"))  # no empty, '.' or '..' component: see above
            filetype = filetype_of(entry)
            parent_fd = cached.get(parts[:-1]) if len(parts) > 1 else (root_fd if parts else None)
            if (
                parent_fd is None
                or filetype == la.AE_IFDIR
                or parts[-1].startswith(WHITEOUT_PREFIX)
                or hardlink_of(entry) is not None
                or xattr_count(entry)
                or parts in dir_meta
                or parts in cached
                or dirs.retired
            ):
                self._member_checked(archive, disk, source, entry, name, parts)
                continue
            written.add(parts)
            size = size_of(entry)
            if (rc := extract(archive, entry, disk)) != la.OK:
                self._extract_failed(rc, archive, disk, source, entry, name, parts, parent_fd, size)
            if filetype == la.AE_IFREG:
                self.size += size

    def _member_checked(
        self, archive: int, disk: int, source: _StreamSource, entry: int, name: str, parts: tuple[str, ...]
    ) -> None:
        if self.dirs.retired:
            self.dirs.release()
        try:
            self._member(archive, disk, source, entry, name, parts)
        except OSError as exc:
            raise ArchiveIOError(
                f"cannot write layer tar entry '{name}' into {self.dirs.root} ({exc.strerror})"
            ) from exc

    def _member(
        self, archive: int, disk: int, source: _StreamSource, entry: int, name: str, parts: tuple[str, ...]
    ) -> None:
        filetype = la.entry_filetype(entry)
        if not parts:
            if filetype != la.AE_IFDIR:
                raise InvalidArchive(f"layer tar entry '{name}' names the layer root but is not a directory")
            hdr = _entry_header(entry, name, DIRECTORY)
            self._set_xattrs(self.dirs.root_fd, hdr)
            self.dir_meta[parts] = hdr
            return
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX) and self.whiteouts is not WhiteoutFormat.AUFS:
            self._whiteout(_entry_header(entry, name, REGULAR), parts)
            return
        if base.startswith(AUFS_META_PREFIX) and base != OPAQUE_MARKER:
            return  # aufs bookkeeping, not content
        parent_fd = self.dirs.fd(parts[:-1], name)
        self.written.add(parts)
        if filetype == la.AE_IFDIR:
            self._directory(_entry_header(entry, name, DIRECTORY), parts, parent_fd)
            return
        link = la.entry_hardlink(entry)
        if link is not None and not self._hardlink_target(name, _decode(link), parts):
            return
        if parts in self.dir_meta or parts in self.dirs.cached_fds:
            # A directory this apply knows is replaced: remove it here, so that no stale
            # fd or directory time of it is left to use.
            self._clear_path(parent_fd, base, parts, os.stat(base, dir_fd=parent_fd, follow_symlinks=False))
        _drop_driver_xattrs(entry)
        size = la.entry_size(entry)
        self._extract(archive, disk, source, entry, name, parts, parent_fd, size, link is not None)
        if filetype == la.AE_IFREG and link is None:
            self.size += size

    def _extract(
        self,
        archive: int,
        disk: int,
        source: _StreamSource,
        entry: int,
        name: str,
        parts: tuple[str, ...],
        parent_fd: int,
        size: int,
        is_link: bool = False,
    ) -> None:
        if (rc := la.read_extract2(archive, entry, disk)) != la.OK:
            self._extract_failed(rc, archive, disk, source, entry, name, parts, parent_fd, size, is_link)

    def _extract_failed(
        self,
        rc: int,
        archive: int,
        disk: int,
        source: _StreamSource,
        entry: int,
        name: str,
        parts: tuple[str, ...],
        parent_fd: int,
        size: int,
        is_link: bool = False,
    ) -> None:
        """After libarchive failed on a member: raise the right error, or clear the way and write it again."""
        try:
            self._recover(rc, archive, disk, source, entry, name, parts, parent_fd, size, is_link)
        except OSError as exc:
            raise ArchiveIOError(
                f"cannot write layer tar entry '{name}' into {self.dirs.root} ({exc.strerror})"
            ) from exc

    def _recover(
        self,
        rc: int,
        archive: int,
        disk: int,
        source: _StreamSource,
        entry: int,
        name: str,
        parts: tuple[str, ...],
        parent_fd: int,
        size: int,
        is_link: bool,
    ) -> None:
        code = la.errno(archive)
        if source.error is not None or (rc <= la.FATAL and code in _FORMAT_ERRNOS):
            raise source.failure(archive)
        message = _decode(la.error_string(archive))
        if is_link and code == errno.ENOENT:
            raise InvalidArchive(f"layer tar hardlink '{name}' points to a path that does not exist ({message})")
        st = _lstat(parent_fd, parts[-1])
        if st is not None and (stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            # libarchive only removes an empty directory in the way, and follows a symlink
            # in the way to decide: remove either here and write the member again.
            self._clear_path(parent_fd, parts[-1], parts, st)
            # A failed archive_write_header sets the entry's size to 0; its data is still unread.
            la.entry_set_size(entry, size)
            if la.read_extract2(archive, entry, disk) == la.OK:
                return
            message = _decode(la.error_string(archive))
        raise ArchiveIOError(f"cannot write layer tar entry '{name}' into {self.dirs.root} ({message})")

    def _hardlink_target(self, name: str, linkname: str, parts: tuple[str, ...]) -> bool:
        """Check a hardlink's target; False if the member links to itself and so is left out."""
        target = member_parts(linkname, "hardlink target")
        if not target:
            raise UnsafeArchive(f"layer tar hardlink '{name}' points to the layer root; refusing it")
        if target == parts:
            return False
        try:
            target_fd = self.dirs.fd(target[:-1], name, create=False)
            os.stat(target[-1], dir_fd=target_fd, follow_symlinks=False)
        except FileNotFoundError as exc:
            raise InvalidArchive(f"layer tar hardlink '{name}' points to '{linkname}', which does not exist") from exc
        return True

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

    def _finish_dir(self, parts: tuple[str, ...], hdr: Header) -> None:
        # Owner, mode and times of directories come last: writing children changes
        # a directory's mtime, and a read-only mode would stop a non-root apply.
        fd = self.dirs.fd(parts, hdr.name, create=False)
        if self.chown:
            os.fchown(fd, hdr.uid, hdr.gid)
        os.fchmod(fd, hdr.mode)
        os.utime(fd, ns=(hdr.mtime_ns, hdr.mtime_ns))


def _unshare_fs() -> None:
    if _libc.unshare(_CLONE_FS) != 0:
        code = ctypes.get_errno()
        raise ArchiveIOError(f"cannot give the apply thread its own working directory ({os.strerror(code)})")


def _apply_in_root(source: _StreamSource, root: Path, whiteouts: WhiteoutFormat) -> int:
    """The apply itself; runs in a thread whose working directory is ``root``, shared with no other thread."""
    _unshare_fs()
    applier = _Applier(root, whiteouts)
    try:
        # libarchive writes by path, relative to the working directory: the layer root.
        os.fchdir(applier.dirs.root_fd)
        archive = la.read_new()
        try:
            la.read_support_format_tar(archive)
            if la.read_open(archive, None, None, source.callback, None) != la.OK:
                raise source.failure(archive)
            return applier.apply(archive, source)
        finally:
            la.read_free(archive)
    finally:
        applier.dirs.close()


def apply_layer_tar(tar: BinaryIO, root: Path, whiteouts: WhiteoutFormat) -> int:
    """Extract the uncompressed layer tar ``tar`` into ``root``; return the bytes of regular files written.

    ``.wh.NAME`` members delete NAME and ``.wh..wh..opq`` makes its directory
    opaque, stored the way ``whiteouts`` says (``DELETE``: really deleted;
    ``OVERLAY``: char device 0/0 and the opaque xattr; ``AUFS``: the marker
    files are kept). A member replacing a path of another type removes it
    first; existing directories are kept and get the member's metadata.
    Owner, mode, xattrs and nanosecond mtimes are restored.

    The work runs in a short-lived thread with its own working directory and
    umask (``unshare(CLONE_FS)``): libarchive writes by relative path and
    reads the umask by setting it, neither of which may touch the caller's
    other threads.

    Raises ``UnsafeArchive`` for a member that would write outside ``root``
    (absolute name, ``..``, a symlink among its parents, a hardlink out of the
    layer), ``InvalidArchive`` for a malformed tar and ``ArchiveIOError`` when
    the disk refuses a write. On error, ``root`` is left half-applied; the
    caller removes it. The stream is read to its end.
    """
    source = _StreamSource(tar)
    try:
        if not source.prefetch():
            return 0  # an empty stream is an empty layer, as some writers omit even the end blocks
        outcome: list[int | BaseException] = []

        def work() -> None:
            try:
                outcome.append(_apply_in_root(source, root, whiteouts))
            except BaseException as exc:  # re-raised below, in the caller's thread
                outcome.append(exc)

        thread = threading.Thread(target=work, name=f"drivebay apply into {root}")
        thread.start()
        thread.join()
        result = outcome[0]
        if isinstance(result, BaseException):
            raise result
        while source.fill():
            pass  # moby reads the stream to its end too, so that callers hashing it see every byte
        return result
    finally:
        source.close()
