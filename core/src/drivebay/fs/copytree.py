"""Copy a directory tree exactly: data by reflink where the filesystem can, and every piece of metadata.

Per regular file the data goes by the cheapest method that works: a FICLONE
reflink (btrfs, xfs with reflink: no data is copied, extents are shared),
then ``copy_file_range`` (in-kernel, no user-space buffers), then read and
write. A method the filesystem refused once is not tried again in the same
copy, so a tree of many small files pays for the refusal once.

Preserved: file types (directories, regular files, symlinks, character and
block devices, fifos, sockets), owner and group, mode with setuid, setgid and
sticky bits, every extended attribute (file capabilities and ACLs included),
nanosecond access and modification times, and hard links among the files
being copied.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

FICLONE = 0x40049409
"""``_IOW(0x94, 9, int)`` from linux/fs.h."""

CHUNK = 1 << 20
_UNSUPPORTED = (errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EBADF)
"""Errors that mean "this method does not work between these files", not "the copy failed"."""


@dataclass
class CopyStats:
    """What a copy did: files by data method, hard links made, and bytes of regular-file data."""

    reflinked: int = 0
    copy_file_range: int = 0
    plain: int = 0
    hardlinks: int = 0
    bytes: int = 0


class _DataCopier:
    """Copies file data, remembering which methods this pair of filesystems refused."""

    def __init__(self, stats: CopyStats) -> None:
        self.stats = stats
        self.try_reflink = True
        self.try_copy_file_range = True

    def copy(self, src_fd: int, dst_fd: int, size: int) -> None:
        self.stats.bytes += size
        if self.try_reflink:
            try:
                fcntl.ioctl(dst_fd, FICLONE, src_fd)
            except OSError as exc:
                if exc.errno not in _UNSUPPORTED:
                    raise
                self.try_reflink = False
            else:
                self.stats.reflinked += 1
                return
        if self.try_copy_file_range:
            try:
                self._copy_file_range(src_fd, dst_fd, size)
            except OSError as exc:
                if exc.errno not in _UNSUPPORTED:
                    raise
                self.try_copy_file_range = False
                os.lseek(src_fd, 0, os.SEEK_SET)
                os.lseek(dst_fd, 0, os.SEEK_SET)
                os.ftruncate(dst_fd, 0)
            else:
                self.stats.copy_file_range += 1
                return
        self._plain(src_fd, dst_fd)
        self.stats.plain += 1

    @staticmethod
    def _copy_file_range(src_fd: int, dst_fd: int, size: int) -> None:
        copied = 0
        while True:
            # Ask for at least one chunk so that a file that grew since lstat is still copied whole.
            n = os.copy_file_range(src_fd, dst_fd, max(size - copied, CHUNK))
            if n == 0:
                return
            copied += n

    @staticmethod
    def _plain(src_fd: int, dst_fd: int) -> None:
        while block := os.read(src_fd, CHUNK):
            view = memoryview(block)
            while view:
                view = view[os.write(dst_fd, view) :]


def _copy_xattrs(src: str, dst: str) -> None:
    for name in os.listxattr(src, follow_symlinks=False):
        os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False)


def _copy_metadata(src: str, dst: str, st: os.stat_result) -> None:
    """Owner first (chown clears setuid bits and capabilities), then xattrs, mode (ACLs touch it), times."""
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    _copy_xattrs(src, dst)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _copy_file(src: str, dst: str, st: os.stat_result, data: _DataCopier) -> None:
    src_fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        dst_fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            data.copy(src_fd, dst_fd, st.st_size)
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)


def copy_tree(src: Path, dst: Path) -> CopyStats:
    """Copy the contents and metadata of directory ``src`` into directory ``dst``.

    ``dst`` must be an empty directory or not exist; it takes ``src``'s own
    owner, mode, xattrs and times too. Raises ``OSError`` (naming the path) on
    any failure, leaving a partial copy for the caller to remove.
    """
    stats = CopyStats()
    data = _DataCopier(stats)
    linked: dict[tuple[int, int], str] = {}
    root_st = os.lstat(src)
    if not stat.S_ISDIR(root_st.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, "copy_tree needs a directory", str(src))
    if not os.path.isdir(dst):
        os.mkdir(dst, 0o700)
    # Directory metadata is set last, deepest first, because creating entries changes a directory's mtime.
    directories: list[tuple[str, str, os.stat_result]] = [(str(src), str(dst), root_st)]
    pending = [(str(src), str(dst))]
    while pending:
        src_dir, dst_dir = pending.pop()
        with os.scandir(src_dir) as entries:
            for entry in entries:
                s, d = entry.path, os.path.join(dst_dir, entry.name)
                st = entry.stat(follow_symlinks=False)
                mode = st.st_mode
                if stat.S_ISDIR(mode):
                    os.mkdir(d, 0o700)
                    directories.append((s, d, st))
                    pending.append((s, d))
                    continue
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in linked:
                    os.link(linked[key], d, follow_symlinks=False)
                    stats.hardlinks += 1
                    continue
                if stat.S_ISREG(mode):
                    _copy_file(s, d, st, data)
                elif stat.S_ISLNK(mode):
                    os.symlink(os.readlink(s), d)
                else:
                    os.mknod(d, mode, st.st_rdev)
                _copy_metadata(s, d, st)
                if st.st_nlink > 1:
                    linked[key] = d
    for s, d, st in reversed(directories):
        _copy_metadata(s, d, st)
    return stats


def copy_method(directory: Path) -> str:
    """The data method :func:`copy_tree` would use within ``directory``'s filesystem, found by trying it.

    Returns ``reflink``, ``copy_file_range`` or ``read/write``; for status displays.
    """
    probe = _DataCopier(CopyStats())
    with tempfile.TemporaryDirectory(prefix=".copy-method-", dir=directory) as scratch:
        src, dst = os.path.join(scratch, "src"), os.path.join(scratch, "dst")
        Path(src).write_bytes(b"drivebay")
        _copy_file(src, dst, os.lstat(src), probe)
    if probe.stats.reflinked:
        return "reflink"
    return "copy_file_range" if probe.stats.copy_file_range else "read/write"
