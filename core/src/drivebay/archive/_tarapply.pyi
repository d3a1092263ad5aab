"""Layer tar apply in C; use :func:`drivebay.archive.apply_layer_tar`."""

from typing import BinaryIO

DELETE: int
OVERLAY: int
AUFS: int
UNSAFE: int
INVALID: int
IO: int

def apply(
    stream: BinaryIO, root: str | bytes, whiteouts: int, drop_xattr_prefixes: tuple[str, ...], opaque_xattr: str, /
) -> tuple[int, int, str]:
    """Apply the tar read from ``stream`` to ``root``: (bytes of regular files, error kind or 0, error message)."""

def split(stream: BinaryIO, fd: int, /) -> tuple[int, bool, int, str]:
    """Write the tar-split of the tar read from ``stream`` to ``fd``: (tar size, files exact, error kind, message)."""
