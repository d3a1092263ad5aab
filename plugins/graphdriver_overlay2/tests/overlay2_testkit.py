"""Helpers shared by the overlay2 tests: layer tars, mount counting, the root requirement."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from drivebay.facades.graph import GraphDriver
from drivebay.fs.mounts import mounts_under, unmount_all_under
from drivebay.loader import KINDS, load_driver
from drivebay.state import StateDB

OpenDriver = Callable[..., GraphDriver]


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("overlay2 tests mount filesystems and need root")


@contextmanager
def opened_drivers(root: Path) -> Iterator[OpenDriver]:
    """Open any number of facades on ``root``; all are cleaned up and every mount under ``root`` undone."""
    drivers: list[GraphDriver] = []

    def open_driver(options: Mapping[str, str] | None = None) -> GraphDriver:
        loaded = load_driver(KINDS["graph"], "overlay2")
        reason = loaded.hook.graph_probe(home=root / "overlay2")
        if reason is not None:
            pytest.skip(f"overlay2 is not supported here: {reason}")
        driver = GraphDriver(loaded, root / "overlay2", StateDB.for_root(root), dict(options or {}))
        drivers.append(driver)
        return driver

    try:
        yield open_driver
    finally:
        try:
            for driver in reversed(drivers):
                driver.cleanup()
                driver.state.close()
        finally:
            unmount_all_under(root)


def mount_count(path: Path) -> int:
    """How many mounts sit exactly at ``path``."""
    target = Path(os.path.realpath(path))
    return sum(1 for entry in mounts_under(path) if entry.mount_point == target)
