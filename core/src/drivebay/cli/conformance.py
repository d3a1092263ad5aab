"""``drivebay conformance``: run the graph driver conformance suite and print the driver x case matrix.

The suite (distribution ``drivebay-conformance``) runs in its own pytest
process, whose output goes to stderr as it runs; a small result-collecting
plugin writes each case's outcome per driver to a JSON file, which becomes the
matrix on stdout (or the JSON itself with ``--json``, for CI dashboards).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from drivebay.cli.context import CliContext
from drivebay.errors import DrivebayError, DriverNotFound
from drivebay.loader import KINDS, installed_drivers

SUITE = "drivebay_conformance"
Results = dict[str, dict[str, dict[str, str]]]
CELL = {
    "passed": "[green]pass[/]",
    "failed": "[red bold]FAIL[/]",
    "error": "[red bold]ERROR[/]",
    "skipped": "[yellow]skip[/]",
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "conformance",
        help="run the graph driver conformance suite",
        description="Run the conformance suite against installed graph drivers and print a driver x case matrix. "
        "Exit status 1 if any case failed.",
    )
    parser.add_argument(
        "--driver", action="append", default=[], metavar="NAME", help="only this graph driver (repeatable)"
    )
    parser.add_argument("--json", action="store_true", help="print {driver: {case: {outcome, reason}}} as JSON")
    parser.add_argument("--run-slow", action="store_true", help="also run slow cases (1 GiB file, 500-deep chains)")
    parser.set_defaults(func=cmd_conformance)


def _check_drivers(names: list[str]) -> None:
    installed = [d.name for d in installed_drivers(KINDS["graph"])]
    unknown = [name for name in names if name not in installed]
    if unknown:
        raise DriverNotFound(
            f"no graph driver named {', '.join(repr(n) for n in unknown)} is installed "
            f"(installed: {', '.join(installed) or 'none'}); install it or choose an installed one"
        )


def run_suite(drivers: list[str], run_slow: bool) -> Results:
    """Run the suite in a pytest subprocess (its output to our stderr) and return the collected outcomes."""
    if importlib.util.find_spec(SUITE) is None:
        raise DrivebayError("the conformance suite is not installed; pip install drivebay-conformance")
    _check_drivers(drivers)
    with tempfile.TemporaryDirectory(prefix="drivebay-conformance-") as tmp:
        report = Path(tmp) / "report.json"
        command = [
            sys.executable, "-m", "pytest", "--pyargs", SUITE, "-p", "no:cacheprovider",
            "-p", f"{SUITE}.report", f"--conformance-report={report}", "-q", "-rfE",
        ]  # fmt: skip
        for name in drivers:
            command += ["--driver", name]
        if run_slow:
            command.append("--run-slow")
        # cwd is empty so no conftest or pytest config of the caller's directory joins the run.
        status = subprocess.run(command, cwd=tmp, stdout=2, check=False).returncode
        if status not in (0, 1) or not report.exists():
            raise DrivebayError(
                f"the conformance suite did not run to the end (pytest exit status {status}); see its output above"
            )
        results: Results = json.loads(report.read_text(encoding="utf-8"))
    return results


def _cell(entry: dict[str, str] | None) -> str:
    if entry is None:
        return "[dim]-[/]"
    text = CELL.get(entry["outcome"], entry["outcome"])
    reason = entry.get("reason", "").strip().splitlines()
    return f"{text}: {escape(reason[0][:160])}" if reason and entry["outcome"] != "passed" else text


def render_matrix(results: Results, console: Console) -> None:
    drivers = sorted(results)
    cases = sorted({case for per_driver in results.values() for case in per_driver})
    table = Table(title="drivebay conformance: graph drivers", show_lines=True)
    table.add_column("case", overflow="fold", min_width=48)
    for driver in drivers:
        table.add_column(driver, overflow="fold")
    for case in cases:
        table.add_row(escape(case), *(_cell(results[d].get(case)) for d in drivers))
    console.print(table)
    counts: dict[str, int] = {}
    for per_driver in results.values():
        for entry in per_driver.values():
            counts[entry["outcome"]] = counts.get(entry["outcome"], 0) + 1
    summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
    console.print(f"{summary or 'no cases ran'} across {len(drivers)} driver(s)")


def failed(results: Results) -> bool:
    return any(e["outcome"] in ("failed", "error") for per_driver in results.values() for e in per_driver.values())


def cmd_conformance(ctx: CliContext) -> int:
    results = run_suite(list(dict.fromkeys(ctx.args.driver)), ctx.args.run_slow)
    if ctx.args.json:
        ctx.print_json(results)
    else:
        render_matrix(results, Console(width=None if sys.stdout.isatty() else 200))
    return 1 if failed(results) else 0
