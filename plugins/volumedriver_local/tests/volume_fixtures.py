"""Fixtures: the local volume driver behind core's facade on a fresh root; every mount undone afterwards."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drivebay.facades.volume import VolumeDriver
from drivebay.fs import mounts
from drivebay.loader import KINDS, load_driver
from drivebay.state import StateDB

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="real mounts need root")


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "root"
    try:
        yield root
    finally:
        mounts.unmount_all_under(tmp_path)


@pytest.fixture
def open_driver(root: Path) -> Iterator[Callable[[], VolumeDriver]]:
    """Opens a driver as a separate drivebay process would: its own state connection."""
    states: list[StateDB] = []

    def opener() -> VolumeDriver:
        state = StateDB.for_root(root)
        states.append(state)
        return VolumeDriver(load_driver(KINDS["volume"], "local"), root, state)

    try:
        yield opener
    finally:
        for state in states:
            state.close()


@pytest.fixture
def driver(open_driver: Callable[[], VolumeDriver]) -> VolumeDriver:
    return open_driver()
