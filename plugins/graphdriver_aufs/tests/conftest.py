from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivebay.facades.graph import GraphDriver
from drivebay.fs.mounts import unmount_all_under
from drivebay.loader import KINDS, load_driver
from drivebay.state import StateDB
from drivebay_graphdriver_aufs.mountpaths import fuse_reason


@pytest.fixture
def aufs(tmp_path: Path) -> Iterator[GraphDriver]:
    """A fresh aufs driver in its own root, served through whichever mount path this host has."""
    if os.geteuid() != 0:
        pytest.skip("aufs mounts need root")
    reason = fuse_reason()
    loaded = load_driver(KINDS["graph"], "aufs")
    probe = loaded.hook.graph_probe(home=tmp_path / "aufs")
    if probe is not None:
        pytest.skip(f"aufs is not supported here: {probe} ({reason})")
    driver = GraphDriver(loaded, tmp_path / "aufs", StateDB.for_root(tmp_path), {})
    try:
        yield driver
    finally:
        driver.cleanup()
        unmount_all_under(tmp_path)
        driver.state.close()
