from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from drivebay.facades.graph import GraphDriver
from drivebay.testing.graphs import OpenGraph, opened_graph_drivers
from drivebay.testing.scratchfs import scratch_filesystem_or_skip


@pytest.fixture
def btrfs_root(tmp_path: Path) -> Iterator[Path]:
    """A fresh loop-mounted btrfs, unmounted and deleted afterwards, failures included."""
    with scratch_filesystem_or_skip("btrfs", size_mb=512, parent=tmp_path) as mount_point:
        yield mount_point


@pytest.fixture
def open_graph(btrfs_root: Path) -> Iterator[OpenGraph]:
    """Open the btrfs driver on ``btrfs_root`` (again, to act as a later process); all closed at the end."""
    with opened_graph_drivers("btrfs", btrfs_root) as opener:
        yield opener


@pytest.fixture
def graph(open_graph: OpenGraph) -> GraphDriver:
    return open_graph()
