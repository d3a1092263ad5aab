"""Bench output: rich tables, Markdown, JSON and a grouped bar chart of the ratios."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from drivebay.bench.runner import Result
from drivebay.errors import DrivebayError


def _duration(seconds: float) -> str:
    """Three significant figures: a mount takes microseconds, an apply seconds."""
    if seconds >= 1:
        return f"{seconds:.2f}s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g}ms"
    return f"{seconds * 1e6:.3g}µs"


def _cell(result: Result) -> str:
    if result.status != "ok":
        return f"{result.status}: {result.reason}"
    driver = _duration(result.driver_series.summary()["median_s"])
    ref = _duration(result.reference_series.summary()["median_s"])
    ratio = result.ratio
    return f"{ratio:.2f}x ({driver} / {ref})" if ratio is not None else f"{driver} / {ref}"


def _grid(results: list[Result]) -> dict[str, tuple[list[str], list[str], dict[tuple[str, str], Result]]]:
    by_workload: dict[str, list[Result]] = defaultdict(list)
    for result in results:
        by_workload[result.workload].append(result)
    grids = {}
    for workload, items in by_workload.items():
        drivers = sorted({r.driver for r in items})
        filesystems = list(dict.fromkeys(r.fs for r in items))
        grids[workload] = (drivers, filesystems, {(r.driver, r.fs): r for r in items})
    return grids


def print_tables(results: list[Result], console: Console) -> None:
    for workload, (drivers, filesystems, cells) in _grid(results).items():
        reference = next(iter(cells.values())).reference
        table = Table(title=f"{workload}: driver time / {reference} (median; lower is better)")
        table.add_column("driver")
        for fs in filesystems:
            table.add_column(fs)
        for driver in drivers:
            table.add_row(driver, *(_cell(cells[(driver, fs)]) for fs in filesystems))
        console.print(table)


def markdown(results: list[Result]) -> str:
    lines = []
    for workload, (drivers, filesystems, cells) in _grid(results).items():
        reference = next(iter(cells.values())).reference
        lines += [f"**{workload}** (ratio to {reference}; lower is better)", ""]
        lines.append("| driver | " + " | ".join(filesystems) + " |")
        lines.append("|---|" + "---|" * len(filesystems))
        for driver in drivers:
            lines.append(f"| {driver} | " + " | ".join(_cell(cells[(driver, fs)]) for fs in filesystems) + " |")
        lines.append("")
    return "\n".join(lines)


def write_json(path: Path, results: list[Result], machine: dict[str, object], extras: dict[str, object]) -> None:
    document = {"machine": machine, **extras, "results": [r.to_json() for r in results]}
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_plot(path: Path, results: list[Result]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise DrivebayError("--plot needs matplotlib: pip install 'drivebay[plot]'") from exc
    grids = _grid(results)
    fig, axes = plt.subplots(len(grids), 1, figsize=(10, 2.6 * len(grids)), squeeze=False)
    for ax, (workload, (drivers, filesystems, cells)) in zip(axes[:, 0], grids.items(), strict=True):
        width = 0.8 / max(1, len(drivers))
        for index, driver in enumerate(drivers):
            ratios = [cells[(driver, fs)].ratio or 0.0 for fs in filesystems]
            ax.bar([x + index * width for x in range(len(filesystems))], ratios, width, label=driver)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks([x + width * (len(drivers) - 1) / 2 for x in range(len(filesystems))], filesystems)
        ax.set_ylabel("ratio")
        ax.set_title(f"{workload} (vs {next(iter(cells.values())).reference})", fontsize=9)
        ax.legend(fontsize=7, ncol=len(drivers))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
