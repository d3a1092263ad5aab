"""Reading an inode's xattrs as a layer holds them (the tar writer reads its own in ``_tarwrite.c``)."""

from __future__ import annotations

import os


def read_xattrs(source: str | int, exclude_prefixes: tuple[str, ...]) -> dict[str, bytes]:
    """The xattrs of ``source`` (a path, not followed if a symlink, or an open fd), minus excluded prefixes.

    Only the names this process may read are listed by the kernel (``trusted.*``
    needs root), so what is returned is what is readable.
    """
    names = os.listxattr(source, follow_symlinks=False) if isinstance(source, str) else os.listxattr(source)
    if not names:
        return {}
    wanted = sorted(name for name in names if not name.startswith(exclude_prefixes))
    if isinstance(source, str):
        return {name: os.getxattr(source, name, follow_symlinks=False) for name in wanted}
    return {name: os.getxattr(source, name) for name in wanted}
