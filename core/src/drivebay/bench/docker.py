"""Optional comparison with a reachable Docker engine: ``docker import`` of the same many-file layer."""

from __future__ import annotations

import statistics
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from drivebay.bench.machine import docker_reachable
from drivebay.bench.measure import Phases, timed
from drivebay.bench.runner import SEED, Result
from drivebay.bench.workloads import RunData, Scale


def _docker_import(tar: Path, tag: str) -> Callable[[], object]:
    return lambda: subprocess.run(["docker", "import", str(tar), tag], check=True, capture_output=True)


def compare_with_docker(results: list[Result], scale: Scale, repeat: int) -> dict[str, object]:
    """Time ``docker import`` and give each driver's apply-small-files ratio against it."""
    reason = docker_reachable()
    if reason:
        return {"status": "skipped", "reason": reason}
    with tempfile.TemporaryDirectory(prefix="drivebay-bench-docker-") as tmp:
        tar = RunData(Path(tmp), scale, SEED, Phases()).small_tar
        walls = []
        for index in range(repeat):
            tag = f"drivebay-bench:{index}"
            walls.append(timed(_docker_import(tar, tag)).wall)
            subprocess.run(["docker", "rmi", tag], capture_output=True, check=False)
    docker_median = statistics.median(walls)
    ratios = {
        f"{r.driver}@{r.fs}": r.driver_series.summary()["median_s"] / docker_median
        for r in results
        if r.workload == "apply-small-files" and r.status == "ok"
    }
    return {
        "status": "ok",
        "docker_import_median_s": docker_median,
        "apply_ratio_vs_docker": ratios,
        "note": "docker's data root may sit on another filesystem than the drivebay run",
    }
