"""Graph driver facades for tests: opened on a root, skipped where the host lacks them, always torn down."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from drivebay.facades.graph import GraphDriver
from drivebay.fs.mounts import unmount_all_under
from drivebay.loader import KINDS, load_driver
from drivebay.state import StateDB

OpenGraph = Callable[..., GraphDriver]
"""``open_graph(options=None)``: one more facade on the same root, as another drivebay process would open it."""


@contextmanager
def opened_graph_drivers(name: str, root: Path) -> Iterator[OpenGraph]:
    """Open facades over graph driver ``name`` with its home at ``root/name``, any number of times.

    Skips the test when the driver's probe refuses this host. On exit each facade
    is cleaned up and its state closed, then every mount under ``root`` undone,
    failures included.
    """
    drivers: list[GraphDriver] = []

    def open_graph(options: Mapping[str, str] | None = None) -> GraphDriver:
        # With the timing tracer: tests read its totals to see which hooks ran.
        loaded = load_driver(KINDS["graph"], name, timing=True)
        reason = loaded.hook.graph_probe(home=root / name)
        if reason is not None:
            pytest.skip(f"graph driver '{name}' is not supported here: {reason}")
        state = StateDB.for_root(root)
        try:
            driver = GraphDriver(loaded, root / name, state, dict(options or {}))
        except BaseException:
            state.close()
            raise
        drivers.append(driver)
        return driver

    try:
        yield open_graph
    finally:
        try:
            for driver in reversed(drivers):
                try:
                    driver.cleanup()
                finally:
                    driver.state.close()
        finally:
            unmount_all_under(root)
