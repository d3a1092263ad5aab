from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivebay.facades.graph import GraphDriver
from drivebay.testing.graphs import opened_graph_drivers


@pytest.fixture
def aufs(tmp_path: Path) -> Iterator[GraphDriver]:
    """A fresh aufs driver in its own root, served through whichever mount path this host has."""
    if os.geteuid() != 0:
        pytest.skip("aufs mounts need root")
    with opened_graph_drivers("aufs", tmp_path) as open_graph:
        yield open_graph()
