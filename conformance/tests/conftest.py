"""Run the suite in a subprocess against test drivers installed only for that subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

DRIVERS = Path(__file__).parent / "drivers"
ENTRY_POINTS = """[drivebay.graphdrivers]
cpcopy = conformance_test_drivers:CpCopyDriver
broken = conformance_test_drivers:BrokenCopyDriver
"""


@pytest.fixture
def test_drivers_site(tmp_path: Path) -> Path:
    """A directory that, on PYTHONPATH, installs the ``cpcopy`` and ``broken`` graph drivers."""
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(DRIVERS / "conformance_test_drivers.py", site)
    info = site / "drivebay_conformance_test_drivers-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: drivebay-conformance-test-drivers\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return site


@pytest.fixture
def run_with_test_drivers(test_drivers_site: Path, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``python -m ARGS...`` with the test drivers installed, in an empty directory; returns the result."""
    workdir = tmp_path / "work"
    workdir.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(test_drivers_site), os.environ.get("PYTHONPATH", "")])}
        return subprocess.run(
            [sys.executable, "-m", *args], cwd=workdir, env=env, capture_output=True, text=True, check=False
        )

    return run
