"""Helpers shared by the overlay2 tests: layer tars, mount counting, the root requirement."""

from __future__ import annotations

import io
import os
import tarfile
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


def layer_tar(entries: Mapping[str, bytes | None]) -> io.BytesIO:
    """A layer tar: names ending in ``/`` are directories, ``None`` data an empty file (whiteouts)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(entries.items()):
            info = tarfile.TarInfo(name.rstrip("/"))
            info.mtime = 1_700_000_000
            if name.endswith("/"):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                content = data or b""
                info.size, info.mode = len(content), 0o644
                tar.addfile(info, io.BytesIO(content))
    buf.seek(0)
    return buf


def tar_names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getnames()


def mount_count(path: Path) -> int:
    """How many mounts sit exactly at ``path``."""
    target = Path(os.path.realpath(path))
    return sum(1 for entry in mounts_under(path) if entry.mount_point == target)
