"""Run workloads for every driver on every filesystem, with references timed in the same run."""

from __future__ import annotations

import statistics
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from drivebay.bench.filesystems import FsTarget, provisioned
from drivebay.bench.measure import Timing, disk_usage, timed
from drivebay.bench.workloads import BenchEnv, FsData, Scale, Workload
from drivebay.facades.graph import GraphDriver
from drivebay.fs.mounts import unmount_all_under
from drivebay.loader import KINDS, load_driver
from drivebay.state import StateDB

SEED = 20261123


@dataclass
class Series:
    """Repeated timings of one side (driver or reference)."""

    timings: list[Timing] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        walls = [t.wall for t in self.timings]
        cpus = [t.cpu for t in self.timings]
        return {
            "median_s": statistics.median(walls),
            "min_s": min(walls),
            "max_s": max(walls),
            "cpu_median_s": statistics.median(cpus),
        }


@dataclass
class Result:
    workload: str
    driver: str
    fs: str
    reference: str
    status: str = "ok"
    reason: str = ""
    driver_series: Series = field(default_factory=Series)
    reference_series: Series = field(default_factory=Series)
    disk: dict[str, int] = field(default_factory=dict)
    hooks: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        if self.status != "ok":
            return None
        ref = self.reference_series.summary()["median_s"]
        return self.driver_series.summary()["median_s"] / ref if ref > 0 else None

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "workload": self.workload,
            "driver": self.driver,
            "fs": self.fs,
            "reference": self.reference,
            "status": self.status,
        }
        if self.status != "ok":
            out["reason"] = self.reason
            return out
        out.update(
            driver_timing=self.driver_series.summary(),
            reference_timing=self.reference_series.summary(),
            ratio=self.ratio,
            repeats=len(self.driver_series.timings),
            disk=self.disk,
            hooks=self.hooks,
            notes=self.notes,
        )
        return out


Progress = Callable[[str], None]


def _run_one(env: BenchEnv, workload_cls: type[Workload], repeat: int, result: Result) -> None:
    tracer = env.driver.loaded.tracer
    for _ in range(repeat):
        workload = workload_cls()
        reason = workload.unsupported(env)
        if reason:
            result.status, result.reason = "n/a", reason
            return
        workload.setup(env)
        try:
            workload.before_timed(env, False)
            tracer.reset()
            result.driver_series.timings.append(timed(lambda w=workload: w.run(env)))  # type: ignore[misc]
            for hook, totals in tracer.totals().items():
                entry = result.hooks.setdefault(hook, {"calls": 0, "seconds": 0.0})
                entry["calls"] += totals["calls"]
                entry["seconds"] += totals["seconds"]
            result.disk = disk_usage(env.driver.home)
            workload.after_timed(env, False)
            workload.before_timed(env, True)
            result.reference_series.timings.append(timed(lambda w=workload: w.run_reference(env)))  # type: ignore[misc]
            workload.after_timed(env, True)
            result.notes = sorted(set(result.notes) | set(workload.notes))
        finally:
            workload.teardown(env)


def run_driver_on_fs(
    driver_name: str,
    mount_point: Path,
    data: FsData,
    fs_label: str,
    workloads: dict[str, type[Workload]],
    repeat: int,
    progress: Progress,
) -> list[Result]:
    root = mount_point / "roots" / driver_name
    root.mkdir(parents=True, exist_ok=True)
    loaded = load_driver(KINDS["graph"], driver_name)
    results = [Result(name, driver_name, fs_label, cls.reference) for name, cls in workloads.items()]
    reason = loaded.hook.graph_probe(home=root / driver_name)
    if reason:
        for result in results:
            result.status, result.reason = "n/a", reason
        return results
    state = StateDB.for_root(root)
    driver = GraphDriver(loaded, root / driver_name, state, {})
    scratch = mount_point / "scratch" / driver_name
    scratch.mkdir(parents=True, exist_ok=True)
    env = BenchEnv(driver, scratch, data)
    try:
        for result in results:
            progress(f"{result.workload} · {driver_name} on {fs_label}")
            try:
                _run_one(env, workloads[result.workload], repeat, result)
            except Exception as exc:  # a failed workload is reported in the table, never hidden
                result.status = "error"
                result.reason = f"{type(exc).__name__}: {exc}"
                result.notes.append(traceback.format_exc(limit=3))
                env.remove_layers()
    finally:
        driver.cleanup()
        unmount_all_under(root)
        state.close()
    return results


def run_bench(
    drivers: list[str],
    targets: list[FsTarget],
    workloads: dict[str, type[Workload]],
    repeat: int,
    scale: Scale,
    progress: Progress,
) -> list[Result]:
    results: list[Result] = []
    size_mb = 1536 if scale.big_file_bytes < (1 << 30) else 8192
    for target in targets:
        unavailable = target.unavailable()
        if unavailable:
            for driver_name in drivers:
                results += [
                    Result(name, driver_name, target.label, cls.reference, "n/a", unavailable)
                    for name, cls in workloads.items()
                ]
            continue
        progress(f"preparing {target.label}")
        with provisioned(target, size_mb) as mount_point:
            data = FsData(mount_point / "shared", scale, SEED)
            for driver_name in drivers:
                results += run_driver_on_fs(driver_name, mount_point, data, target.label, workloads, repeat, progress)
    return results
