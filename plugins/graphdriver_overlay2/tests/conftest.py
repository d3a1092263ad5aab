"""Fixtures: an overlay2 driver behind core's facade, in its own root, on ext4 (tmp_path) or a loop xfs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from overlay2_testkit import require_root

from drivebay.facades.graph import GraphDriver
from drivebay.testing.graphs import OpenGraph, opened_graph_drivers
from drivebay.testing.scratchfs import scratch_filesystem_or_skip


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a long case (the 500-deep chain through the facade)")


@pytest.fixture(params=["ext4", "xfs"])
def backing_root(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A root on the machine's own filesystem (tmp_path) and on a loop-mounted xfs."""
    require_root()
    if request.param == "ext4":
        yield tmp_path
        return
    with scratch_filesystem_or_skip(request.param, size_mb=512, parent=tmp_path) as mount_point:
        yield mount_point


@pytest.fixture
def open_overlay2(backing_root: Path) -> Iterator[OpenGraph]:
    """Open overlay2 facades on the parametrised root (ext4 and xfs)."""
    with opened_graph_drivers("overlay2", backing_root) as open_driver:
        yield open_driver


@pytest.fixture
def overlay2(open_overlay2: OpenGraph) -> GraphDriver:
    return open_overlay2()


@pytest.fixture
def ext4_overlay2(tmp_path: Path) -> Iterator[GraphDriver]:
    """One facade on tmp_path only, for tests whose subject is not the backing filesystem."""
    require_root()
    with opened_graph_drivers("overlay2", tmp_path) as open_driver:
        yield open_driver()


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Make loop filesystems of a type on demand; each is removed afterwards."""
    require_root()
    with ExitStack() as stack:

        def make(fstype: str, *mkfs_args: str) -> Path:
            return stack.enter_context(
                scratch_filesystem_or_skip(fstype, size_mb=512, parent=tmp_path, mkfs_args=mkfs_args)
            )

        yield make
