"""Fixtures of the snapshotter tests: each graph driver served on a fresh root; one private containerd."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from snapshotter_fixtures import (
    CONTAINERD_CONFIG,
    DRIVERS,
    PROXY,
    Containerd,
    Served,
    containerd_missing,
    driver_root,
    serve,
    short_tempdir,
    stop_process,
    wait_for_socket,
)

from drivebay.fs.mounts import unmount_all_under


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
        # Registered after the removal so it runs first: containerd leaves its own mounts below its root.
        stack.callback(unmount_all_under, directory)
        served: dict[str, Served] = {}
        skipped: dict[str, str] = {}
        for name in DRIVERS:
            try:
                root = stack.enter_context(driver_root(name))
            except pytest.skip.Exception as exc:
                skipped[name] = str(exc.msg)
                continue
            served[name] = stack.enter_context(serve(name, root, directory / f"{name}.sock"))
        proxies = "".join(PROXY.format(name=n, socket=s.socket) for n, s in served.items())
        config = directory / "config.toml"
        config.write_text(CONTAINERD_CONFIG.format(dir=directory, proxies=proxies))
        log = directory / "containerd.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                ["containerd", "--config", str(config)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        stack.callback(stop_process, process)
        socket = directory / "containerd.sock"
        wait_for_socket(process, socket, log)
        yield Containerd(directory, socket, served, skipped)
