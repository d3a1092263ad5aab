"""Benchmark of the json-file driver: write throughput and tail on a 1 GB log.

Run: ``python plugins/logdriver_json/bench_json_file.py [--lines N] [--log-gb G] [--dir DIR]``

1. Writes N lines of 100 bytes through core's ``LogDriver`` facade (pluggy hook, timing tracer and all), in
   batches as ``logs capture`` hands them over, and compares with one buffered ``write`` of the same
   pre-formatted bytes.
2. Builds a log of G GB (records copied in bulk), then times ``tail=100`` through the facade against reading
   the whole file once (warm page cache, which favours the full read), and ``drivebay logs --tail 100``
   against ``drivebay logs`` of the whole log (both with the interpreter's start-up).

Prints one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from drivebay.facades.log import LogDriver
from drivebay.hookspecs.log import LogMessage, ReadConfig
from drivebay.loader import KINDS, load_driver

BATCH = 256


def bench_writes(root: Path, count: int) -> dict[str, float]:
    driver = LogDriver(load_driver(KINDS["log"], "json-file"), root, {})
    info = driver.info_for("bench")
    payloads = [f"{i:010d} ".encode() + b"x" * 89 for i in range(count)]
    start_ns = time.time_ns()
    batches = [
        [LogMessage(line, "stdout", start_ns + i) for i, line in enumerate(payloads[at : at + BATCH], at)]
        for at in range(0, count, BATCH)
    ]
    started = time.perf_counter()
    with driver.open(info) as writer:
        for batch in batches:
            writer.write(batch)
    driver_seconds = time.perf_counter() - started
    written = (info.container_root / "bench-json.log").read_bytes()
    reference = root / "reference.log"
    started = time.perf_counter()
    with open(reference, "wb") as f:
        f.write(written)
    reference_seconds = time.perf_counter() - started
    return {
        "lines": count,
        "driver_seconds": round(driver_seconds, 4),
        "driver_lines_per_second": round(count / driver_seconds),
        "one_buffered_write_seconds": round(reference_seconds, 4),
        "driver_vs_one_write_ratio": round(driver_seconds / reference_seconds, 1),
        "bytes": len(written),
    }


def bench_tail(root: Path, size_gb: float) -> dict[str, float]:
    driver = LogDriver(load_driver(KINDS["log"], "json-file"), root, {})
    info = driver.info_for("big")
    with driver.open(info) as writer:
        writer.write([LogMessage(f"{i:010d} ".encode() + b"y" * 89, "stdout", time.time_ns()) for i in range(10000)])
    path = info.container_root / "big-json.log"
    block = path.read_bytes()
    target = int(size_gb * 1_000_000_000)
    with open(path, "ab") as f:
        while f.tell() < target:
            f.write(block)
    size = path.stat().st_size
    started = time.perf_counter()
    with open(path, "rb") as f:
        while f.read(1 << 20):
            pass
    full_read = time.perf_counter() - started
    started = time.perf_counter()
    tail = list(driver.read(info, ReadConfig(tail=100)))
    tail_seconds = time.perf_counter() - started
    assert len(tail) == 100
    command = [sys.executable, "-m", "drivebay.cli.main", "--root", str(root), "logs", "big"]
    started = time.perf_counter()
    subprocess.run([*command, "--tail", "100"], check=True, stdout=subprocess.DEVNULL)
    cli_tail = time.perf_counter() - started
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    cli_full = time.perf_counter() - started
    return {
        "log_bytes": size,
        "read_whole_file_seconds": round(full_read, 4),
        "tail_100_seconds": round(tail_seconds, 5),
        "tail_vs_whole_file_ratio": round(tail_seconds / full_read, 5),
        "cli_logs_tail_100_seconds": round(cli_tail, 3),
        "cli_logs_whole_seconds": round(cli_full, 3),
        "cli_tail_vs_cli_whole_ratio": round(cli_tail / cli_full, 5),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=500_000)
    parser.add_argument("--log-gb", type=float, default=1.0)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp dir)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="drivebay-bench-json-", dir=args.dir))
    try:
        result = {
            "write": bench_writes(workdir / "write", args.lines),
            "tail": bench_tail(workdir / "tail", args.log_gb),
            "cpu": os.cpu_count(),
        }
    finally:
        shutil.rmtree(workdir)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
