"""Shared fixtures of the core tests: the Docker fixture files, overlay mounts, vfs facades on one root."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_archive_support import OverlayMount

from drivebay.fs.mounts import unmount_all_under
from drivebay.loader import KINDS, installed_drivers
from drivebay.testing.graphs import OpenGraph, opened_graph_drivers

FIXTURES_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a long case (the apply fuzz's thousands of mutations); runs in CI too")


@pytest.fixture
def fixtures_dir() -> Path:
    """``/work/shared/fixtures`` (found relative to the repo); skips when absent."""
    if not (FIXTURES_DIR / "basic-docker.tar").is_file():
        pytest.skip(f"Docker fixture set A is not at {FIXTURES_DIR}")
    return FIXTURES_DIR


def _overlay_unsupported() -> str | None:
    if os.geteuid() != 0:
        return "mounting overlay needs root"
    with open("/proc/filesystems", encoding="ascii") as f:
        if "overlay" not in f.read().split():
            return "the kernel has no overlay filesystem"
    return None


@pytest.fixture
def overlay_mount(tmp_path: Path) -> Iterator[OverlayMount]:
    """Empty ``lower``, ``upper``, ``work`` and ``merged`` directories in ``tmp_path``.

    The test fills ``lower`` and then calls ``mount()``. Whatever is still
    mounted below ``tmp_path`` is unmounted at the end, failures included.
    """
    reason = _overlay_unsupported()
    if reason:
        pytest.skip(reason)
    paths = OverlayMount(*(tmp_path / name for name in ("lower", "upper", "work", "merged")))
    for path in (paths.lower, paths.upper, paths.work, paths.merged):
        path.mkdir()
    try:
        yield paths
    finally:
        unmount_all_under(tmp_path)


@pytest.fixture
def vfs_graphs(tmp_path: Path) -> Iterator[OpenGraph]:
    """Open any number of vfs facades on one root, as separate processes would."""
    if os.geteuid() != 0:
        pytest.skip("layer contents keep owners, which needs root")
    if "vfs" not in {d.name for d in installed_drivers(KINDS["graph"])}:
        pytest.skip("drivebay-graphdriver-vfs is not installed")
    with opened_graph_drivers("vfs", tmp_path) as open_driver:
        yield open_driver
