"""Run workloads for every driver on every filesystem, with references timed in the same run."""

from __future__ import annotations

import statistics
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from drivebay.bench.filesystems import FsTarget, data_cache, provisioned
from drivebay.bench.measure import Phases, Timing, disk_usage, phase_delta, timed
from drivebay.bench.workloads import BenchEnv, FsData, RunData, Scale, Workload
from drivebay.facades.graph import GraphDriver
from drivebay.fs.mounts import unmount_all_under
from drivebay.loader import KINDS, load_driver
from drivebay.state import StateDB
from drivebay.tracing import TimingTracer

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
    iterations: int = 1
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.status != "ok":
            return None
        ref = self.reference_series.summary()["median_s"]
        return self.driver_series.summary()["median_s"] / ref if ref > 0 else None

    @property
    def cpu_ratio(self) -> float | None:
        """Driver over reference CPU time (this process and its children; not kernel threads or FUSE daemons).

        On a loaded machine it is steadier than the wall ratio for work done in process.
        """
        if self.status != "ok":
            return None
        ref = self.reference_series.summary()["cpu_median_s"]
        return self.driver_series.summary()["cpu_median_s"] / ref if ref > 0 else None

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "workload": self.workload,
            "driver": self.driver,
            "fs": self.fs,
            "reference": self.reference,
            "status": self.status,
        }
        if self.phases:
            out["phases"] = self.phases
        if self.status != "ok":
            out["reason"] = self.reason
            return out
        out.update(
            driver_timing=self.driver_series.summary(),
            reference_timing=self.reference_series.summary(),
            ratio=self.ratio,
            cpu_ratio=self.cpu_ratio,
            repeats=len(self.driver_series.timings),
            iterations=self.iterations,
            disk=self.disk,
            hooks=self.hooks,
            notes=self.notes,
        )
        return out


Progress = Callable[[str], None]


def _tracer(env: BenchEnv) -> TimingTracer:
    """The driver's timing tracer: the bench loads every driver with one, for the per-hook totals."""
    tracer = env.driver.loaded.tracer
    if tracer is None:
        raise RuntimeError(f"graph driver '{env.driver.name}' was loaded without its timing tracer")
    return tracer


def _sample(env: BenchEnv, workload: Workload, reference: bool, phases: Phases) -> Timing:
    """One timed run of one side, with its untimed preparation and release around it."""
    with phases.phase("between"):
        workload.before_timed(env, reference)
        _tracer(env).reset()
    with phases.phase("timed"):
        timing = timed(partial(workload.run_reference if reference else workload.run, env))
    return timing


def _run_one(env: BenchEnv, workload_cls: type[Workload], repeat: int, result: Result, phases: Phases) -> None:
    tracer = _tracer(env)
    result.iterations = workload_cls.iterations
    for index in range(repeat):
        workload = workload_cls()
        workload.last_run = index == repeat - 1
        reason = workload.unsupported(env)
        if reason:
            result.status, result.reason = "n/a", reason
            return
        with phases.phase("setup"):
            workload.setup(env)
        try:
            walls: dict[bool, list[float]] = {False: [], True: []}
            cpus: dict[bool, list[float]] = {False: [], True: []}
            for iteration in range(workload.iterations):
                # Alternate which side goes first, so neither always runs on caches the other warmed.
                order = (False, True) if (index + iteration) % 2 == 0 else (True, False)
                for reference in order:
                    timing = _sample(env, workload, reference, phases)
                    walls[reference].append(timing.wall)
                    cpus[reference].append(timing.cpu)
                    with phases.phase("between"):
                        if not reference:
                            for hook, totals in tracer.totals().items():
                                entry = result.hooks.setdefault(hook, {"calls": 0, "seconds": 0.0})
                                entry["calls"] += totals["calls"]
                                entry["seconds"] += totals["seconds"]
                            if iteration == 0 and index in (0, repeat - 1):
                                # The smallest footprint seen after the first or last run: layers handed on
                                # from apply to remove are there after every run of apply but the first,
                                # and after every run of remove but the last.
                                usage = disk_usage(env.driver.home)
                                if not result.disk or usage["du_bytes"] < result.disk["du_bytes"]:
                                    result.disk = usage
                        workload.after_timed(env, reference)
            # A sample's wall time is the median run, so one run stalled by another process does not
            # swing a millisecond ratio; CPU is the mean, as getrusage is too coarse for one short run.
            for reference, series in ((False, result.driver_series), (True, result.reference_series)):
                series.timings.append(Timing(statistics.median(walls[reference]), statistics.fmean(cpus[reference])))
            result.notes = sorted(set(result.notes) | set(workload.notes))
        finally:
            with phases.phase("teardown"):
                workload.teardown(env)


def execution_order(workloads: dict[str, type[Workload]]) -> list[str]:
    """Workload names with those sharing fixtures next to each other, so each fixture is built once."""
    return sorted(workloads, key=lambda name: (workloads[name].shares, name))


def run_driver_on_fs(
    driver_name: str,
    mount_point: Path,
    data: FsData,
    fs_label: str,
    workloads: dict[str, type[Workload]],
    repeat: int,
    progress: Progress,
    phases: Phases,
) -> list[Result]:
    root = mount_point / "roots" / driver_name
    root.mkdir(parents=True, exist_ok=True)
    loaded = load_driver(KINDS["graph"], driver_name, timing=True)
    results = {name: Result(name, driver_name, fs_label, cls.reference) for name, cls in workloads.items()}
    reason = loaded.hook.graph_probe(home=root / driver_name)
    if reason:
        for result in results.values():
            result.status, result.reason = "n/a", reason
        return list(results.values())
    state = StateDB.for_root(root)
    driver = GraphDriver(loaded, root / driver_name, state, {})
    scratch = mount_point / "scratch" / driver_name
    scratch.mkdir(parents=True, exist_ok=True)
    env = BenchEnv(driver, scratch, data, phases)
    try:
        for name in execution_order(workloads):
            result = results[name]
            progress(f"{name} · {driver_name} on {fs_label}")
            before = phases.snapshot()
            try:
                env.release_shared(keep=workloads[name].shares)
                _run_one(env, workloads[name], repeat, result, phases)
            except Exception as exc:  # a failed workload is reported in the table, never hidden
                result.status = "error"
                result.reason = f"{type(exc).__name__}: {exc}"
                result.notes.append(traceback.format_exc(limit=3))
                env.remove_layers()
                env.release_shared()
            result.phases = phase_delta(before, phases.snapshot())
    finally:
        with phases.phase("teardown"):
            try:
                env.release_shared()
            finally:
                driver.cleanup()
                unmount_all_under(root)
                state.close()
    return list(results.values())


def run_bench(
    drivers: list[str],
    targets: list[FsTarget],
    workloads: dict[str, type[Workload]],
    repeat: int,
    scale: Scale,
    progress: Progress,
    phases: Phases,
) -> list[Result]:
    """Every driver on every target; ``phases`` gets where the wall time went (``by_fs`` too)."""
    results: list[Result] = []
    quick = scale.big_file_bytes < (1 << 30)
    with phases.phase("other"), data_cache(1024 if quick else 5120, phases) as cache:
        run_data = RunData(cache, scale, SEED, phases)
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
            before = phases.snapshot()
            with provisioned(target, 1536 if quick else 8192, phases) as mount_point:
                data = FsData(mount_point / "shared", run_data)
                for driver_name in drivers:
                    results += run_driver_on_fs(
                        driver_name, mount_point, data, target.label, workloads, repeat, progress, phases
                    )
            phases.by_fs[target.label] = phase_delta(before, phases.snapshot())
    return results
