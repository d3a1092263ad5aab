"""mount(2) and umount2(2) through ctypes, and the mount table.

Drivers mount through here so that errors read the same everywhere and no
driver shells out to ``mount`` on a hot path.
"""

from __future__ import annotations

import ctypes
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from drivebay.errors import MountError

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 0x2
CLONE_FS = 0x200

# libc is already loaded into the interpreter: ctypes.util.find_library("c") would run ``ldconfig -p``
# (about 1.5 ms) on every start of every command.
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_own_fs = threading.local()


def mount(source: str, target: Path, fstype: str | None, flags: int = 0, data: str = "") -> None:
    """Mount ``source`` on ``target``; raises ``MountError`` naming both and the errno."""
    data_bytes = data.encode() if data else None
    rc = _libc.mount(source.encode(), os.fsencode(target), fstype.encode() if fstype else None, flags, data_bytes)
    if rc != 0:
        err = ctypes.get_errno()
        raise MountError(
            f"mount of {source} ({fstype or 'bind'}) on {target} failed: {os.strerror(err)} "
            f"(options {data[:200] + '...' if len(data) > 200 else data or 'none'})"
        )


def unmount(target: Path, lazy: bool = False) -> None:
    """Unmount ``target``; raises ``MountError`` unless it was not mounted."""
    rc = _libc.umount2(os.fsencode(target), MNT_DETACH if lazy else 0)
    if rc != 0:
        err = ctypes.get_errno()
        if err == 22 and not is_mountpoint(target):  # EINVAL: nothing mounted there
            return
        raise MountError(f"unmount of {target} failed: {os.strerror(err)}; is a process still using it?")


def _change_directory(directory: Path) -> int:
    """Move this thread alone into ``directory``; returns a descriptor of where it was."""
    if not getattr(_own_fs, "done", False):
        if _libc.unshare(CLONE_FS) != 0:
            err = ctypes.get_errno()
            raise MountError(f"unshare(CLONE_FS) to change directory to {directory} failed: {os.strerror(err)}")
        _own_fs.done = True
    back = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.chdir(directory)
    except BaseException:
        os.close(back)
        raise
    return back


def _return_to(back: int) -> None:
    try:
        os.fchdir(back)
    finally:
        os.close(back)


@contextmanager
def thread_working_directory(directory: Path) -> Iterator[None]:
    """Run the block in ``directory``, moving only this thread's working directory, never the process's.

    Mount data with paths relative to a directory is what lets moby's 128 short
    ``l/`` links fit mount(2)'s one page; moby forks a child to change directory
    for it, which costs milliseconds. Here the calling thread first gets its own
    filesystem attributes (``unshare(CLONE_FS)``, once per thread), so other
    threads never see the change. From then on this thread's working directory
    and umask are its own: a later ``os.chdir`` in another thread no longer moves it.
    """
    back = _change_directory(directory)
    try:
        yield
    finally:
        _return_to(back)


def mount_relative(directory: Path, source: str, target: Path, fstype: str, flags: int, data: str) -> None:
    """:func:`mount` with ``data`` holding paths relative to ``directory``, as in :func:`thread_working_directory`.

    A plain function rather than that context manager: it is the mount hot path of overlay2.
    """
    back = _change_directory(directory)
    try:
        mount(source, target, fstype, flags, data)
    finally:
        _return_to(back)


@dataclass(frozen=True)
class MountEntry:
    """One line of /proc/self/mountinfo."""

    mount_point: Path
    fstype: str
    source: str
    options: str
    super_options: str


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def mount_table() -> list[MountEntry]:
    entries = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            fstype, source, super_opts = [*right.split(), "", "", ""][:3]
            entries.append(MountEntry(Path(_unescape(fields[4])), fstype, _unescape(source), fields[5], super_opts))
    return entries


def is_mountpoint(path: Path) -> bool:
    target = Path(os.path.realpath(path))
    return any(entry.mount_point == target for entry in mount_table())


def mounts_under(prefix: Path) -> list[MountEntry]:
    """Mounts at or below ``prefix``, deepest first (the order to unmount them in)."""
    base = Path(os.path.realpath(prefix))
    found = [e for e in mount_table() if e.mount_point == base or base in e.mount_point.parents]
    return sorted(found, key=lambda e: len(e.mount_point.parts), reverse=True)


def unmount_all_under(prefix: Path) -> None:
    """Unmount every mount below ``prefix``, deepest first."""
    for entry in mounts_under(prefix):
        unmount(entry.mount_point)


@contextmanager
def mounted_on_temporary_dir(
    parent: Path, prefix: str, mount_on: Callable[[Path], None], unmount_from: Callable[[Path], None] = unmount
) -> Iterator[Path]:
    """Mount with ``mount_on`` on a fresh directory under ``parent`` for the block; undo both after, failures included.

    For private views (a diff's parent layers, say) that must stay apart from refcounted mounts.
    """
    target = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        mount_on(target)
        try:
            yield target
        finally:
            unmount_from(target)
    finally:
        target.rmdir()
