"""Options with Docker's names and units, non-blocking mode, a full disk, and core's time parsing."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from json_log_fixtures import T0, make_driver

from drivebay.errors import InvalidConfig, UsageError
from drivebay.fs.loopfs import scratch_filesystem
from drivebay.hookspecs.log import LogMessage, ReadConfig
from drivebay.timestamps import format_timestamp, parse_timestamp
from drivebay.units import parse_byte_size


def test_hook_log_capabilities_declare_reading_and_options(root: Path) -> None:
    caps = make_driver(root).capabilities
    assert caps.read_logs is True
    assert "max-size" in caps.options and "tag" in caps.options


def test_hook_log_probe_accepts_any_host(root: Path) -> None:
    driver = make_driver(root)
    assert driver.loaded.hook.log_probe(root=root) is None


def test_hook_log_validate_options_names_the_unknown_option(root: Path) -> None:
    with pytest.raises(InvalidConfig, match="unknown log opt 'max-sise' for json-file"):
        make_driver(root, {"max-sise": "10m"})
    for bad, message in [
        ({"max-size": "ten"}, "max-size='ten' is not a size"),
        ({"max-size": "0"}, "positive"),
        ({"max-file": "0"}, "cannot be less than 1"),
        ({"compress": "maybe"}, "not a boolean"),
        ({"env-regex": "("}, "not a valid regular expression"),
        ({"mode": "lazy"}, "mode='lazy' is not valid"),
        ({"max-buffer-size": "1m"}, "only supported with mode=non-blocking"),
    ]:
        with pytest.raises(InvalidConfig, match=message):
            make_driver(root, bad)


def test_unknown_tag_field_is_an_error(root: Path) -> None:
    driver = make_driver(root)
    with pytest.raises(InvalidConfig, match=r"unknown field '\.Nope'"):
        driver.open(driver.info_for("web", options={"tag": "{{.Nope}}"}))
    assert not (root / "containers" / "web" / "web-json.log").exists()


def test_sizes_use_docker_units() -> None:
    assert parse_byte_size("10m", binary=False) == 10_000_000
    assert parse_byte_size("1.5k", binary=False) == 1500
    assert parse_byte_size("2g", binary=False) == 2_000_000_000
    assert parse_byte_size("1m", binary=True) == 1 << 20
    assert parse_byte_size("4KiB", binary=True) == 4096


def test_non_blocking_mode_drops_and_counts_instead_of_waiting(root: Path) -> None:
    driver = make_driver(root, {"mode": "non-blocking", "max-buffer-size": "1k"})
    info = driver.info_for("web")
    writer = driver.open(info)
    writer.write([LogMessage(b"x" * 100, "stdout", T0 + i) for i in range(1000)])
    stats = writer.close()
    assert stats.dropped >= 980 and stats.written + stats.dropped == 1000
    assert stats.last_error is not None and "max-buffer-size" in stats.last_error
    assert len(list(driver.read(info, ReadConfig()))) == stats.written


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs to fill needs root")
def test_full_disk_drops_counts_and_never_tears_later_lines(tmp_path: Path) -> None:
    with scratch_filesystem("tmpfs", size_mb=1, parent=tmp_path) as small:
        driver = make_driver(small)
        info = driver.info_for("web")
        writer = driver.open(info)
        for batch in range(100):
            writer.write([LogMessage(f"{batch:03d}-{i:03d} ".encode() + b"z" * 90, "stdout", T0) for i in range(100)])
        stats = writer.close()
        assert stats.dropped > 0 and stats.written > 0
        assert stats.written + stats.dropped == 10000
        assert stats.last_error is not None and "No space left" in stats.last_error
        entries = list(driver.read(info, ReadConfig()))
        assert len(entries) == stats.written and all(e.line.endswith("z" * 90) for e in entries)
        for path in info.container_root.iterdir():
            for raw in path.read_bytes().splitlines():
                if raw.startswith(b'{"log"') and raw.endswith(b"}"):
                    json.loads(raw)


def test_since_and_until_take_docker_forms() -> None:
    now = 1_795_429_638_500_000_000
    assert parse_timestamp("10m", now) == now - 600 * 10**9
    assert parse_timestamp("1h30m", now) == now - 5400 * 10**9
    assert parse_timestamp("1795429638.25") == 1_795_429_638_250_000_000
    assert parse_timestamp("2026-11-23T10:27:18Z") == 1_795_429_638 * 10**9
    assert parse_timestamp("2026-11-23T10:27:18.5+01:00") == (1_795_429_638 - 3600) * 10**9 + 500_000_000
    assert parse_timestamp("2026-11-23") == int(time.mktime((2026, 11, 23, 0, 0, 0, 0, 0, -1))) * 10**9
    with pytest.raises(UsageError, match="cannot parse timestamp 'yesterday'"):
        parse_timestamp("yesterday")
    assert format_timestamp(1_795_429_638_000_000_500) == "2026-11-23T10:27:18.000000500Z"
