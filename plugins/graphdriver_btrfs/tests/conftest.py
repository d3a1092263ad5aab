from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path

import pytest

from drivebay.facades.graph import GraphDriver
from drivebay.loader import KINDS, load_driver
from drivebay.state import StateDB
from drivebay.testing.scratchfs import scratch_filesystem_or_skip

OpenGraph = Callable[..., GraphDriver]


@pytest.fixture
def btrfs_root(tmp_path: Path) -> Iterator[Path]:
    """A fresh loop-mounted btrfs, unmounted and deleted afterwards, failures included."""
    with scratch_filesystem_or_skip("btrfs", size_mb=512, parent=tmp_path) as mount_point:
        yield mount_point


@pytest.fixture
def open_graph(btrfs_root: Path) -> Iterator[OpenGraph]:
    """Open the btrfs driver on ``btrfs_root`` (again, to act as a later process); all closed at the end."""
    with ExitStack() as stack:

        def opener(options: Mapping[str, str] | None = None) -> GraphDriver:
            state = StateDB.for_root(btrfs_root)
            stack.callback(state.close)
            return GraphDriver(load_driver(KINDS["graph"], "btrfs"), btrfs_root / "btrfs", state, options or {})

        yield opener


@pytest.fixture
def graph(open_graph: OpenGraph) -> GraphDriver:
    return open_graph()
