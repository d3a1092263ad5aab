"""Layer tar apply in C; use :func:`drivebay.archive.apply_layer_tar`."""

from typing import BinaryIO, final

from _typeshed import WriteableBuffer

DELETE: int
OVERLAY: int
AUFS: int
UNSAFE: int
INVALID: int
IO: int
CHANGED: int

def apply(
    stream: BinaryIO, root: str | bytes, whiteouts: int, drop_xattr_prefixes: tuple[str, ...], opaque_xattr: str, /
) -> tuple[int, int, str]:
    """Apply the tar read from ``stream`` to ``root``: (bytes of regular files, error kind or 0, error message)."""

def split(stream: BinaryIO, fd: int, /) -> tuple[int, bool, int, str]:
    """Write the tar-split of the tar read from ``stream`` to ``fd``: (tar size, files exact, error kind, message)."""

@final
class SplitReader:
    """The tar of the tar-split at ``offset`` of ``split_fd``, its files read below ``root_fd`` through no symlink."""

    def __init__(self, split_fd: int, offset: int, root_fd: int, /) -> None: ...
    @property
    def size(self) -> int | None:
        """The tar's size from the split's end record, or None before it is read."""

    def readinto(self, buffer: WriteableBuffer, /) -> tuple[int, int, str]:
        """Fill ``buffer`` with the next bytes of the tar: (count, error kind or 0, error message)."""

    def close(self) -> None:
        """Close the reader's fds (again is fine)."""
