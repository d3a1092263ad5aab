"""Layer tars written by Python's :mod:`tarfile`, independent of drivebay's own writer.

Tests feed these to drivers and the CLI, so a bug in :mod:`drivebay.archive`'s
writer cannot hide itself by producing the input it then reads back.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Mapping

MTIME = 1_700_000_000
"""Every entry's mtime, so the same entries always make the same bytes."""


def layer_tar(entries: Mapping[str, bytes | str | None], links: Mapping[str, str] | None = None) -> bytes:
    """A PAX layer tar with the entries in the order given, then the hard links.

    Names ending in ``/`` are directories; ``bytes`` are file contents; a
    ``str`` is a symlink target; ``None`` is an empty file (whiteouts are
    spelled out: ``.wh.NAME``, ``dir/.wh..wh..opq``). ``links`` maps hard link
    names to their targets.
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name.rstrip("/"))
            info.mtime = MTIME
            if name.endswith("/"):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif isinstance(data, str):
                info.type, info.linkname = tarfile.SYMTYPE, data
                tar.addfile(info)
            else:
                payload = data or b""
                info.size, info.mode = len(payload), 0o644
                tar.addfile(info, io.BytesIO(payload))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mtime = tarfile.LNKTYPE, target, MTIME
            tar.addfile(info)
    return buf.getvalue()


def tar_names(data: bytes) -> list[str]:
    """Entry names of a layer tar, without ``./`` prefixes or trailing slashes, and without the root entry."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return [name.removeprefix("./").rstrip("/") for name in tar.getnames() if name not in (".", "./")]
