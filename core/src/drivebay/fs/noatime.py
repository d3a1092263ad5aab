"""Reading a directory without giving it a new atime.

A diff reads every directory of a layer, and with ``relatime`` the first
read after a change writes a new atime into the inode. On btrfs that
dirties inode items that the next native diff (a generation search) must
commit and then look at, for nothing. ``O_NOATIME`` avoids it; the kernel
grants it to the file's owner or to a process with ``CAP_FOWNER``, and
anyone else reads the way they always did.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def open_dir_noatime(path: str) -> int:
    """An fd of directory ``path`` whose reads leave its atime alone when the kernel allows it."""
    try:
        return os.open(path, _DIR_FLAGS | os.O_NOATIME)
    except PermissionError:
        return os.open(path, _DIR_FLAGS)


@contextmanager
def scandir_noatime(path: str) -> Iterator[Iterator[os.DirEntry[str]]]:
    """``os.scandir(path)`` without a new atime. Entries' ``path`` is their bare name; join it to ``path``."""
    fd = open_dir_noatime(path)
    try:
        with os.scandir(fd) as entries:
            yield entries
    finally:
        os.close(fd)
