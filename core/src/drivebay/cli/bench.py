"""``drivebay bench``: compare storage drivers across filesystems."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from drivebay.bench.docker import compare_with_docker
from drivebay.bench.filesystems import default_targets, parse_targets
from drivebay.bench.machine import machine_info
from drivebay.bench.measure import Phases
from drivebay.bench.report import markdown, print_tables, write_json, write_plot
from drivebay.bench.runner import run_bench
from drivebay.bench.workloads import Scale, installed_workloads
from drivebay.cli.context import CliContext
from drivebay.errors import UsageError
from drivebay.loader import KINDS, installed_drivers


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "bench",
        help="compare drivers across filesystems",
        description="Time each storage driver on each filesystem against references timed in the same run "
        "(GNU tar, cp -a, a bare mount, plain reads) and report ratios.",
    )
    parser.add_argument("--driver", action="append", default=[], help="graph driver (repeatable; default: all)")
    parser.add_argument(
        "--fs", action="append", default=[], metavar="ext4|xfs|btrfs|tmpfs|PATH", help="filesystem (repeatable)"
    )
    parser.add_argument("--workload", action="append", default=[], help="workload name (repeatable; default: all)")
    parser.add_argument("--repeat", type=int, default=None, help="runs per measurement (default 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="small data and one run: a smoke test in minutes")
    parser.add_argument("--json", metavar="FILE", type=Path, help="write raw results and machine info as JSON")
    parser.add_argument("--plot", metavar="FILE.png", type=Path, help="write a grouped bar chart of the ratios")
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    parser.set_defaults(func=run)


def _choose(kind: str, asked: list[str], available: list[str]) -> list[str]:
    unknown = [name for name in asked if name not in available]
    if unknown:
        raise UsageError(f"unknown {kind} {', '.join(unknown)}; choose from {', '.join(available)}")
    return asked or available


def run(ctx: CliContext) -> int:
    args = ctx.args
    drivers = _choose("driver", args.driver, [d.name for d in installed_drivers(KINDS["graph"])])
    workloads_all = installed_workloads()
    chosen = _choose("workload", args.workload, list(workloads_all))
    workloads = {name: workloads_all[name] for name in chosen}
    targets = parse_targets(args.fs) if args.fs else default_targets()
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    if repeat < 1:
        raise UsageError("--repeat must be at least 1")
    scale = Scale.quick() if args.quick else Scale.full()
    console = Console(stderr=True)
    phases = Phases()
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True
    ) as progress:
        task = progress.add_task("starting", total=None)
        results = run_bench(
            drivers, targets, workloads, repeat, scale, lambda text: progress.update(task, description=text), phases
        )
    # A log or pipe gets wide tables rather than rich's 80-column default.
    out = Console() if sys.stdout.isatty() else Console(width=200)
    print_tables(results, out)
    if args.markdown:
        print(markdown(results))
    docker = compare_with_docker(results, scale, repeat)
    out.print(f"docker comparison: {docker.get('status')} {docker.get('reason', '')}".rstrip())
    out.print(phases.summary())
    if args.json:
        write_json(
            args.json,
            results,
            machine_info(),
            {"docker": docker, "scale": vars(scale), "repeat": repeat, "phases": phases.to_json()},
        )
    if args.plot:
        write_plot(args.plot, results)
    errors = [r for r in results if r.status == "error"]
    for result in errors:
        print(
            f"drivebay: bench {result.workload} on {result.driver}/{result.fs} failed: {result.reason}", file=sys.stderr
        )
    return 1 if errors else 0
