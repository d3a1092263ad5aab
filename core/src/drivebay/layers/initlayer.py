"""Docker's init layer: the files and mount points every container expects, between image and container.

Docker creates these in a read-write layer of their own so that ``docker
diff`` and ``docker commit`` (which compare against it) never show them.
Paths that the image already has are left alone, as Docker does.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

DIR, FILE = "dir", "file"

INIT_PATHS: dict[str, str] = {
    "/dev/pts": DIR,
    "/dev/shm": DIR,
    "/proc": DIR,
    "/sys": DIR,
    "/.dockerenv": FILE,
    "/etc/resolv.conf": FILE,
    "/etc/hosts": FILE,
    "/etc/hostname": FILE,
    "/dev/console": FILE,
    "/etc/mtab": "/proc/mounts",
}
"""Path -> ``dir``, ``file`` (empty, mode 0755 as Docker makes them) or a symlink target."""


def _open_or_make_dir(name: str, dir_fd: int) -> int:
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        os.mkdir(name, 0o755, dir_fd=dir_fd)
        os.chmod(name, 0o755, dir_fd=dir_fd)
        return os.open(name, flags, dir_fd=dir_fd)


def _open_parent(root_fd: int, parts: list[str]) -> int | None:
    """Open (making with 0755) each directory of ``parts`` below ``root_fd`` without following symlinks.

    Returns ``None`` when a component is a symlink or not a directory: the
    image put something else there, and following it could leave the layer.
    """
    fd = os.dup(root_fd)
    for part in parts:
        try:
            child = _open_or_make_dir(part, fd)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                return None
            raise
        os.close(fd)
        fd = child
    return fd


def populate_init_layer(root: Path) -> None:
    """Create Docker's init paths in the mounted layer at ``root``."""
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for path, kind in INIT_PATHS.items():
            *parents, name = path.strip("/").split("/")
            parent_fd = _open_parent(root_fd, parents)
            if parent_fd is None:
                continue
            try:
                try:
                    os.lstat(name, dir_fd=parent_fd)
                    continue
                except FileNotFoundError:
                    pass
                if kind == DIR:
                    os.mkdir(name, 0o755, dir_fd=parent_fd)
                    os.chmod(name, 0o755, dir_fd=parent_fd)
                elif kind == FILE:
                    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o755, dir_fd=parent_fd)
                    try:
                        os.fchmod(fd, 0o755)
                    finally:
                        os.close(fd)
                else:
                    os.symlink(kind, name, dir_fd=parent_fd)
            finally:
                os.close(parent_fd)
    finally:
        os.close(root_fd)
