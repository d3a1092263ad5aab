"""Fixtures of the vfs tests: a facade over vfs in a fresh root, on the test's tmp_path or a scratch filesystem."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path

import pytest
from vfs_testkit import OpenVfs

from drivebay.facades.graph import GraphDriver
from drivebay.testing.graphs import opened_graph_drivers
from drivebay.testing.scratchfs import scratch_filesystem_or_skip


@pytest.fixture
def open_vfs(tmp_path: Path) -> Iterator[OpenVfs]:
    """``open_vfs(fstype=None, options={})``: a vfs facade whose root is tmp_path or a new scratch filesystem."""
    if os.geteuid() != 0:
        pytest.skip("the vfs tests keep owners, devices and trusted xattrs, which needs root")
    with ExitStack() as stack:

        def open_driver(fstype: str | None = None, options: Mapping[str, str] | None = None) -> GraphDriver:
            root = tmp_path / "root"
            if fstype is not None:
                root = stack.enter_context(scratch_filesystem_or_skip(fstype, size_mb=512, parent=tmp_path))
            return stack.enter_context(opened_graph_drivers("vfs", root))(options)

        yield open_driver


@pytest.fixture
def vfs(open_vfs: OpenVfs) -> GraphDriver:
    return open_vfs()
