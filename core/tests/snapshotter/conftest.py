"""Fixtures of the snapshotter tests: each graph driver served on a fresh root; one private containerd."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from snapshotter_fixtures import (
    DRIVERS,
    Containerd,
    Served,
    containerd_missing,
    driver_root,
    run_containerd,
    serve,
    short_tempdir,
)


@pytest.fixture(params=DRIVERS)
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    """Each graph driver served on a fresh root, with a client."""
    name = str(request.param)
    with driver_root(name) as root:
        sockets = short_tempdir("dbsock-")
        try:
            with serve(name, root, sockets / "snapshotter.sock") as served:
                yield served
        finally:
            shutil.rmtree(sockets, ignore_errors=True)


@pytest.fixture(scope="module")
def containerd() -> Iterator[Containerd]:
    """One private containerd for the module, with every graph driver that can serve as a proxy snapshotter."""
    reason = containerd_missing()
    if reason:
        pytest.skip(reason)
    with ExitStack() as stack:
        directory = short_tempdir("dbctrd-")
        stack.callback(shutil.rmtree, directory, ignore_errors=True)
        served: dict[str, Served] = {}
        skipped: dict[str, str] = {}
        for name in DRIVERS:
            try:
                root = stack.enter_context(driver_root(name))
            except pytest.skip.Exception as exc:
                skipped[name] = str(exc.msg)
                continue
            served[name] = stack.enter_context(serve(name, root, directory / f"{name}.sock"))
        running = stack.enter_context(run_containerd(directory, served))
        running.skipped = skipped
        yield running
