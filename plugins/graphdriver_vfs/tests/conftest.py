"""Fixtures of the vfs tests: a facade over vfs in a fresh root, on the test's tmp_path or a scratch filesystem."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path

import pytest

from drivebay.errors import DriverNotSupported
from drivebay.facades.graph import GraphDriver
from drivebay.fs.loopfs import scratch_filesystem
from drivebay.loader import KINDS, load_driver
from drivebay.state import StateDB

OpenVfs = Callable[..., GraphDriver]


@pytest.fixture
def open_vfs(tmp_path: Path) -> Iterator[OpenVfs]:
    """``open_vfs(fstype=None, options={})``: a vfs facade whose root is tmp_path or a new scratch filesystem."""
    if os.geteuid() != 0:
        pytest.skip("the vfs tests keep owners, devices and trusted xattrs, which needs root")
    with ExitStack() as stack:

        def open_driver(fstype: str | None = None, options: Mapping[str, str] | None = None) -> GraphDriver:
            root = tmp_path / "root"
            if fstype is not None:
                try:
                    root = stack.enter_context(scratch_filesystem(fstype, size_mb=512, parent=tmp_path))
                except DriverNotSupported as exc:
                    pytest.skip(str(exc))
            state = StateDB.for_root(root)
            stack.callback(state.close)
            return GraphDriver(load_driver(KINDS["graph"], "vfs"), root / "vfs", state, dict(options or {}))

        yield open_driver


@pytest.fixture
def vfs(open_vfs: OpenVfs) -> GraphDriver:
    return open_vfs()


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
