"""Helpers and fixtures of the json-file tests: a driver behind core's facade, on a fresh root per test."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from drivebay.facades.log import LogDriver
from drivebay.hookspecs.log import LogInfo, LogMessage
from drivebay.loader import KINDS, load_driver

T0 = 1_795_429_638_000_000_000
"""2026-11-23T10:27:18Z, a whole second."""


def make_driver(root: Path, options: Mapping[str, str] | None = None) -> LogDriver:
    return LogDriver(load_driver(KINDS["log"], "json-file"), root, dict(options or {}))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


def write_lines(
    driver: LogDriver, info: LogInfo, lines: list[bytes], source: str = "stdout", start_ns: int = T0
) -> None:
    with driver.open(info) as writer:
        writer.write([LogMessage(line, source, start_ns + i * 1000) for i, line in enumerate(lines)])
