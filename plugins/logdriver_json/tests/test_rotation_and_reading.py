"""Rotation, compression, tail, since/until, as Docker does them, and never a lost line."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
from json_log_fixtures import T0, make_driver, write_lines

from drivebay.errors import InvalidConfig, LogInUse, LogNotFound
from drivebay.hookspecs.log import LogMessage, ReadConfig

ROTATING = {"max-size": "2k", "max-file": "4"}
COMPRESSING = {**ROTATING, "compress": "true"}


def _lines(n: int, width: int = 90) -> list[bytes]:
    return [f"{i:06d} ".encode().ljust(width, b"x") for i in range(n)]


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_hook_log_start_creates_the_log_and_refuses_a_second_writer(root: Path) -> None:
    first, second = make_driver(root), make_driver(root)
    info = first.info_for("web")
    writer = first.open(info)
    try:
        assert (info.container_root / "web-json.log").exists()
        with pytest.raises(LogInUse, match="another process"):
            second.open(info)
    finally:
        writer.close()
    second.open(info).close()


def test_hook_log_close_returns_the_counts(root: Path) -> None:
    driver = make_driver(root)
    writer = driver.open(driver.info_for("web"))
    writer.write([LogMessage(b"a", "stdout", T0), LogMessage(b"b", "stderr", T0 + 1)])
    stats = writer.close()
    assert (stats.written, stats.dropped, stats.last_error) == (2, 0, None)


def test_rotation_shifts_files_and_keeps_max_file(root: Path) -> None:
    driver = make_driver(root, ROTATING)
    info = driver.info_for("web")
    write_lines(driver, info, _lines(200))
    assert _names(info.container_root) == ["web-json.log", "web-json.log.1", "web-json.log.2", "web-json.log.3"]
    for name in _names(info.container_root):
        assert (info.container_root / name).stat().st_size <= 2000 + 200
    entries = list(driver.read(info, ReadConfig()))
    numbers = [int(e.line[:6]) for e in entries]
    assert numbers == list(range(numbers[0], 200))  # the newest lines, in order, none missing
    assert len(numbers) > 40


def test_compress_gzips_rotated_files_with_docker_last_time(root: Path) -> None:
    driver = make_driver(root, {"max-size": "2k", "max-file": "50", "compress": "true"})
    info = driver.info_for("web")
    write_lines(driver, info, _lines(300))
    names = _names(info.container_root)
    assert "web-json.log.1.gz" in names and "web-json.log.1" not in names
    assert not [n for n in names if n.endswith(".tmp")]
    gz = info.container_root / "web-json.log.1.gz"
    raw = gz.read_bytes()
    assert raw[:4] == b"\x1f\x8b\x08\x04"  # deflate, FEXTRA
    extra_len = int.from_bytes(raw[10:12], "little")
    extra = json.loads(raw[12 : 12 + extra_len])
    lines = gzip.decompress(raw).splitlines()
    assert extra == {"lastTime": json.loads(lines[-1])["time"]}
    numbers = [int(e.line[:6]) for e in driver.read(info, ReadConfig())]
    assert numbers == list(range(300))


def test_compress_needs_max_file_and_max_size(root: Path) -> None:
    with pytest.raises(InvalidConfig, match="compress cannot be true"):
        make_driver(root, {"max-size": "1m", "compress": "true"})
    with pytest.raises(InvalidConfig, match="compress cannot be true"):
        make_driver(root, {"max-file": "3", "compress": "true"})


def test_hook_log_read_tail_spans_rotated_and_compressed_files(root: Path) -> None:
    driver = make_driver(root, COMPRESSING)
    info = driver.info_for("web")
    write_lines(driver, info, _lines(100))
    for tail in (0, 1, 5, 30, 1000):
        got = [int(e.line[:6]) for e in driver.read(info, ReadConfig(tail=tail))]
        everything = [int(e.line[:6]) for e in driver.read(info, ReadConfig())]
        assert got == (everything[-tail:] if tail else [])


def test_tail_reads_only_the_end_of_a_huge_file(root: Path) -> None:
    driver = make_driver(root)
    info = driver.info_for("web")
    write_lines(driver, info, [b"first"])
    path = info.container_root / "web-json.log"
    with open(path, "r+b") as f:  # a sparse 1 GiB of old lines (NULs are no records), then 100 real ones
        f.truncate(1 << 30)
        f.seek(0, os.SEEK_END)
        f.write(b"\n")
    write_lines(driver, info, _lines(100), start_ns=T0 + 10**9)

    def bytes_read() -> int:
        with open("/proc/self/io", encoding="ascii") as f:
            return int(next(line for line in f if line.startswith("rchar:")).split()[1])

    before = bytes_read()
    got = list(driver.read(info, ReadConfig(tail=10)))
    assert bytes_read() - before < 4 << 20
    assert [int(e.line[:6]) for e in got] == list(range(90, 100))


def test_since_until_filter_and_skip_old_files_by_last_time(root: Path) -> None:
    driver = make_driver(root, {"max-size": "2k", "max-file": "50", "compress": "true"})
    info = driver.info_for("web")
    write_lines(driver, info, _lines(300))  # line i has time T0 + i µs
    oldest = info.container_root / sorted(n for n in _names(info.container_root) if n.endswith(".gz"))[-1]
    header = oldest.read_bytes()[: 12 + int.from_bytes(oldest.read_bytes()[10:12], "little")]
    oldest.write_bytes(header + b"this is not deflate data")  # reading it would fail: since must skip it
    window = {"since_ns": T0 + 250_000, "until_ns": T0 + 260_000}
    got = [int(e.line[:6]) for e in driver.read(info, ReadConfig(**window))]
    assert got == list(range(250, 261))
    tail = [int(e.line[:6]) for e in driver.read(info, ReadConfig(tail=3, **window))]
    assert tail == [258, 259, 260]


def test_missing_log_is_an_error_naming_the_container(root: Path) -> None:
    driver = make_driver(root)
    with pytest.raises(LogNotFound, match="'ghost'"):
        driver.read(driver.info_for("ghost"), ReadConfig())


def test_reads_files_written_by_docker_and_plain_gzip(root: Path) -> None:
    """Lines as Docker 20.10 writes them, a rotated .2.gz without a lastTime header, and a .1 not yet compressed."""
    directory = root / "containers" / "dock"
    directory.mkdir(parents=True)
    base = directory / "dock-json.log"
    docker_lines = [
        b'{"log":"from docker \\u003c3\\n","stream":"stdout","time":"2026-11-23T10:27:18.1Z"}',
        b'{"log":"part one ","stream":"stderr","time":"2026-11-23T10:27:18.2Z"}',
        b'{"log":"and two\\n","stream":"stderr","time":"2026-11-23T10:27:18.2Z"}',
    ]
    with gzip.open(Path(f"{base}.2.gz"), "wb") as f:
        f.write(docker_lines[0] + b"\n")
    Path(f"{base}.1").write_bytes(docker_lines[1] + b"\n" + docker_lines[2] + b"\n")
    base.write_bytes(b'{"log":"live\\n","stream":"stdout","attrs":{"tag":"t"},"time":"2026-11-23T10:27:19Z"}\n')
    driver = make_driver(root)
    entries = list(driver.read(driver.info_for("dock"), ReadConfig()))
    assert [(e.source, e.line) for e in entries] == [
        ("stdout", "from docker <3"),
        ("stderr", "part one and two"),
        ("stdout", "live"),
    ]
    assert entries[1].timestamp_ns == T0 + 200_000_000 and entries[2].attrs == {"tag": "t"}
    since = list(driver.read(driver.info_for("dock"), ReadConfig(since_ns=T0 + 150_000_000)))
    assert [e.line for e in since] == ["part one and two", "live"]


def test_tail_agrees_with_a_full_read_across_read_blocks(root: Path) -> None:
    driver = make_driver(root, {"max-size": "300k", "max-file": "5"})
    info = driver.info_for("web")
    lines = [f"{i:06d} ".encode() + b"w" * ((i * 7919) % 40000 if i % 97 == 0 else (i * 31) % 300) for i in range(3000)]
    write_lines(driver, info, lines)
    everything = [e.line for e in driver.read(info, ReadConfig())]
    assert everything == [line.decode() for line in lines][-len(everything) :]
    for tail in (1, 7, 500, 1999, len(everything), len(everything) + 10):
        assert [e.line for e in driver.read(info, ReadConfig(tail=tail))] == everything[-tail:]
