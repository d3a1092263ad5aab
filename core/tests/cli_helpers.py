"""Running ``drivebay`` as users do, in a subprocess, against a temporary root with a known config."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from drivebay.loader import KINDS, installed_drivers


@dataclass
class Drivebay:
    """``drivebay --config <empty file> --root <root> [-s driver] ...`` in a subprocess."""

    root: Path
    config: Path
    driver: str | None = "vfs"

    def run(
        self, *args: str, stdin: bytes | None = None, driver: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        chosen = driver or self.driver
        command = [sys.executable, "-m", "drivebay.cli.main", "--config", str(self.config), "--root", str(self.root)]
        if chosen:
            command += ["-s", chosen]
        env = {k: v for k, v in os.environ.items() if not k.startswith("DRIVEBAY_")}
        result = subprocess.run([*command, *args], input=stdin, capture_output=True, env=env, check=False)
        if check and result.returncode != 0:
            raise AssertionError(
                f"drivebay {' '.join(args)} exited {result.returncode}: {result.stderr.decode(errors='replace')}"
            )
        return result

    def out(self, *args: str, stdin: bytes | None = None) -> str:
        return self.run(*args, stdin=stdin).stdout.decode()


def make_drivebay(tmp_path: Path, driver: str | None = "vfs") -> Drivebay:
    if os.geteuid() != 0:
        pytest.skip("the CLI tests keep owners and mount layers, which needs root")
    if driver and driver not in {d.name for d in installed_drivers(KINDS["graph"])}:
        pytest.skip(f"graph driver '{driver}' is not installed (pip install drivebay-graphdriver-{driver})")
    config = tmp_path / "config.yaml"
    config.write_text("# the built-in defaults\n", encoding="utf-8")
    return Drivebay(root=tmp_path / "root", config=config, driver=driver)
