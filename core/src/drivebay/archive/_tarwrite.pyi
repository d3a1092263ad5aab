"""Types of the C extension ``_tarwrite.c``: the layer tar writer's walk, reads and header encoding."""

from collections.abc import Callable

WHITEOUT_PREFIX: str
OPAQUE_MARKER: str
AUFS_META_PREFIX: str
OVERLAY_OPAQUE_XATTR: str

class WriteError(Exception):
    """A member could not be written; ``args`` are ``(kind, message)``, kind ``"unreadable"`` or ``"invalid"``."""

class TarWriter:
    """Layer tar members, passed to ``write`` as memoryviews of one reused 1 MiB buffer."""

    def __init__(self, write: Callable[[memoryview], object], exclude_xattr_prefixes: tuple[bytes, ...]) -> None: ...
    def write_tree(self, root: bytes, whiteouts: str) -> None:
        """Members for everything below the directory ``root``, in tree order (``whiteouts``: a WhiteoutFormat)."""
    def add_path(self, root: bytes, member: bytes) -> None:
        """The inode at ``root/member`` (not followed) as ``member``."""
    def add_whiteout(self, member: bytes) -> None:
        """An empty 0600 file ``member`` with zero owner and time."""
    def finish(self) -> None:
        """End the archive and write out the buffer."""
