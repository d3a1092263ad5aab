"""Following: across many rotations while a writer races, and across outside truncation."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from json_log_fixtures import T0, make_driver

from drivebay.hookspecs.log import LogEntry, LogMessage, ReadConfig

WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from drivebay.facades.log import LogDriver
    from drivebay.hookspecs.log import LogMessage
    from drivebay.loader import KINDS, load_driver

    root, count, options = Path(sys.argv[1]), int(sys.argv[2]), dict(a.split("=", 1) for a in sys.argv[3:])
    driver = LogDriver(load_driver(KINDS["log"], "json-file"), root, options)
    with driver.open(driver.info_for("racer")) as writer:
        print("started", flush=True)
        sys.stdin.readline()
        for start in range(0, count, 50):
            writer.write([LogMessage(f"{i:07d} ".encode() + b"y" * 80, "stdout", time.time_ns())
                          for i in range(start, min(start + 50, count))])
    """
)


def _follow_in_thread(driver_root: Path, into: list[LogEntry], options: dict[str, str]) -> threading.Thread:
    driver = make_driver(driver_root, options)
    entries = driver.read(driver.info_for("racer"), ReadConfig(follow=True, poll_seconds=0.005))

    def run() -> None:
        into.extend(entries)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("compress", ["false", "true"])
def test_hook_log_read_follow_races_a_writer_across_many_rotations(root: Path, compress: str) -> None:
    count = 20000
    options = {"max-size": "8k", "max-file": "400", "compress": compress}
    args = [f"{k}={v}" for k, v in options.items()]
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), str(count), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdin is not None
        assert writer.stdout.readline().strip() == "started"
        got: list[LogEntry] = []
        follower = _follow_in_thread(root, got, options)
        writer.stdin.write("go\n")
        writer.stdin.flush()
        assert writer.wait(timeout=120) == 0
        follower.join(timeout=60)
        assert not follower.is_alive(), "the follower did not stop after the writer closed the log"
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    rotated = list((root / "containers" / "racer").iterdir())
    assert len(rotated) > 100, "the race needs many rotations"
    numbers = [int(e.line[:7]) for e in got]
    assert numbers == list(range(count)), "lines were lost or repeated"


def test_follow_survives_truncation_from_outside(root: Path) -> None:
    driver = make_driver(root)
    info = driver.info_for("racer")
    writer = driver.open(info)
    try:
        writer.write([LogMessage(f"{i:07d}".encode(), "stdout", T0 + i) for i in range(100)])
        got: list[LogEntry] = []
        follower = _follow_in_thread(root, got, {})
        deadline = time.monotonic() + 30
        while len(got) < 100 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(got) == 100
        (info.container_root / "racer-json.log").write_bytes(b"")  # as logrotate's copytruncate does
        # Fewer bytes than before: however late the follower looks, it sees the file shrank.
        writer.write([LogMessage(f"{i:07d}".encode(), "stdout", T0 + i) for i in range(100, 150)])
    finally:
        writer.close()
    follower.join(timeout=30)
    assert not follower.is_alive()
    assert [int(e.line) for e in got] == list(range(150))


def test_follow_of_a_closed_log_prints_what_is_there_and_ends(root: Path) -> None:
    driver = make_driver(root)
    info = driver.info_for("racer")
    with driver.open(info) as writer:
        writer.write([LogMessage(b"only", "stdout", T0)])
    assert [e.line for e in driver.read(info, ReadConfig(follow=True, tail=5))] == ["only"]
