"""Helpers of the vfs tests: the facade opener's type and layer tars written by Python's tarfile."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable, Mapping

from drivebay.facades.graph import GraphDriver

OpenVfs = Callable[..., GraphDriver]


def layer_tar(entries: Mapping[str, bytes | str | None]) -> io.BytesIO:
    """A layer tar written by Python's tarfile (independent of drivebay's writer).

    Names ending in ``/`` are directories; ``bytes`` are file contents; a ``str``
    is a symlink target; ``None`` is an empty file (whiteouts are spelled out:
    ``.wh.NAME``, ``dir/.wh..wh..opq``).
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(entries.items()):
            info = tarfile.TarInfo(name.rstrip("/"))
            info.mtime = 1_700_000_000
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
    buf.seek(0)
    return buf
