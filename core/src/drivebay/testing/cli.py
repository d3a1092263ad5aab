"""Running ``drivebay`` in tests as a user does: a separate process, judged by its exit code and output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_drivebay(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``drivebay --root ROOT ARGS...`` in a subprocess of this interpreter; text output, any exit code returned."""
    return subprocess.run(
        [sys.executable, "-m", "drivebay.cli.main", "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
