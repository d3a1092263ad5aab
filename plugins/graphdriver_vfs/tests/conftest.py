"""Fixtures of the vfs tests: a facade over vfs in a fresh root, on the test's tmp_path or a scratch filesystem."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path

import pytest
from vfs_testkit import OpenVfs

from drivebay.errors import DriverNotSupported
from drivebay.facades.graph import GraphDriver
from drivebay.fs.loopfs import scratch_filesystem
from drivebay.loader import KINDS, load_driver
from drivebay.state import StateDB


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
