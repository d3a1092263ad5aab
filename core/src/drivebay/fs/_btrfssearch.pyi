"""Types of the C extension ``_btrfssearch.c``; use :mod:`drivebay.fs.btrfs`."""

from collections.abc import Sequence

def changed_inodes(fd: int, since: int, origin_fd: int, /) -> list[int]:
    """Inodes of ``fd``'s subvolume whose inode item was written after transaction ``since``.

    With ``origin_fd`` >= 0, those whose item in ``origin_fd``'s subvolume is the same but for its atime are
    left out. Raises ``OSError``.
    """

def changed_paths(fd: int, since: int, origin_fd: int, /) -> tuple[list[str], list[int]]:
    """The paths of ``changed_inodes``'s inodes, relative (``""``: the root), from their name items.

    The second list holds the inodes whose names were not all in the leaves searched. Raises ``OSError``.
    """

def inode_paths(fd: int, inodes: Sequence[int], /) -> list[list[str] | None]:
    """Each inode's paths relative to ``fd``'s subvolume, ``None`` where they do not fit 4 KiB. Raises ``OSError``."""
