"""Helpers shared by the overlay2 tests: mount counting, the root requirement."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from drivebay.fs.mounts import mounts_under


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("overlay2 tests mount filesystems and need root")


def mount_count(path: Path) -> int:
    """How many mounts sit exactly at ``path``."""
    target = Path(os.path.realpath(path))
    return sum(1 for entry in mounts_under(path) if entry.mount_point == target)
