"""``drivebay bench --quick`` runs end to end and its JSON is well formed and sane.

It runs every installed graph driver on tmpfs and one loop-mounted
filesystem. Timings are never asserted; only structure and sanity are.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from drivebay.bench.workloads import installed_workloads
from drivebay.fs.loopfs import can_make
from drivebay.loader import KINDS, installed_drivers

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="bench makes tmpfs and loop filesystems: needs root")


def _bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "drivebay.cli.main", "--root", str(tmp_path / "root"), "bench", *args],
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_quick_bench_json_has_every_combination_with_positive_ratios(tmp_path: Path) -> None:
    loop_fs = "ext4" if can_make("ext4") is None else None
    if loop_fs is None:
        pytest.skip(f"cannot make a loop-mounted ext4 here: {can_make('ext4')}")
    out = tmp_path / "bench.json"
    result = _bench(tmp_path, "--quick", "--fs", "tmpfs", "--fs", loop_fs, "--json", str(out), "--markdown")
    print(result.stdout)
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())

    assert {"kernel", "cpu", "cores", "memory_bytes", "filesystem_tools"} <= set(document["machine"])
    drivers = {d.name for d in installed_drivers(KINDS["graph"])}
    workloads = set(installed_workloads())
    seen = {(r["workload"], r["driver"], r["fs"]) for r in document["results"]}
    assert seen == {(w, d, f) for w in workloads for d in drivers for f in ("tmpfs", loop_fs)}
    ok = [r for r in document["results"] if r["status"] == "ok"]
    assert ok, "no supported combination ran"
    for r in ok:
        assert r["ratio"] > 0
        assert r["cpu_ratio"] is None or r["cpu_ratio"] >= 0
        assert r["driver_timing"]["median_s"] > 0 and r["reference_timing"]["median_s"] > 0
        assert r["driver_timing"]["min_s"] <= r["driver_timing"]["median_s"] <= r["driver_timing"]["max_s"]
        assert r["disk"]["du_bytes"] >= 0
    for r in document["results"]:
        assert r["status"] in ("ok", "n/a"), f"{r['workload']} on {r['driver']}/{r['fs']}: {r.get('reason')}"
        if r["status"] == "n/a":
            assert r["reason"]
    vfs_apply = [r for r in ok if r["driver"] == "vfs" and r["workload"] == "apply-small-files"]
    assert vfs_apply and "graph_apply_diff" in vfs_apply[0]["hooks"], "per-hook timings must reach the JSON"
    assert "| driver |" in result.stdout

    phases = document["phases"]
    assert {"datagen", "provision", "setup", "fixtures", "timed", "teardown"} <= set(phases["totals"])
    assert set(phases["by_fs"]) == {"tmpfs", loop_fs}
    assert sum(phases["totals"].values()) <= phases["wall_s"] + 0.01
    assert "bench took" in result.stdout
    classes = installed_workloads()
    for r in ok:
        assert r["iterations"] == classes[r["workload"]].iterations
        if r["workload"].startswith(("mount-", "create-")):
            assert r["iterations"] >= 20, "a millisecond workload times many runs per sample"
        assert r["phases"], "each result says where its time went"


def test_unknown_names_are_usage_errors(tmp_path: Path) -> None:
    for args, word in (
        (["--driver", "nope"], "driver"),
        (["--workload", "nope"], "workload"),
        (["--fs", "zfsx"], "filesystem"),
    ):
        result = _bench(tmp_path, *args)
        assert result.returncode == 2, result.stderr
        assert f"unknown {word}" in result.stderr and "choose from" in result.stderr
