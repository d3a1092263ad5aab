"""The suite tested on itself: options, collection, star import, a correct driver passes, a broken one explains."""

from __future__ import annotations

import ast
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

import drivebay_conformance.suite as suite
from drivebay.cli.conformance import render_matrix
from drivebay_conformance.plugin import SLOW_REASON

SUITE_DIR = Path(suite.__file__).parent
Runner = Callable[..., subprocess.CompletedProcess[str]]


def _collected(output: str) -> list[str]:
    return [line for line in output.splitlines() if "::" in line]


def test_every_case_is_exported_for_star_import() -> None:
    defined = set()
    for path in SUITE_DIR.glob("test_*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                defined.add(node.name)
    assert defined == set(suite.__all__)


def test_an_unknown_driver_is_a_usage_error_naming_the_installed_ones(run_with_test_drivers: Runner) -> None:
    result = run_with_test_drivers(
        "pytest", "--pyargs", "drivebay_conformance", "--driver", "nosuch", "-p", "no:cacheprovider"
    )
    assert result.returncode == 4, result.stdout + result.stderr
    assert "--driver nosuch: no such graph driver is installed" in result.stderr
    assert "cpcopy" in result.stderr and "broken" in result.stderr


def test_a_driver_test_module_can_import_the_whole_suite(run_with_test_drivers: Runner, tmp_path: Path) -> None:
    """``from drivebay_conformance.suite import *`` in a third party's test file collects the same cases."""
    own = tmp_path / "work" / "test_my_driver.py"
    own.write_text("from drivebay_conformance.suite import *  # noqa: F403\n")
    args = ("--collect-only", "-q", "--driver", "cpcopy", "-p", "no:cacheprovider")
    imported = run_with_test_drivers("pytest", str(own), *args)
    packaged = run_with_test_drivers("pytest", "--pyargs", "drivebay_conformance", *args)
    assert imported.returncode == packaged.returncode == 0, imported.stdout + packaged.stdout
    names = sorted(line.split("::", 1)[1] for line in _collected(imported.stdout))
    assert names == sorted(line.split("::", 1)[1] for line in _collected(packaged.stdout))
    assert any("[cpcopy" in name for name in names)


def test_slow_cases_are_skipped_with_the_reason_unless_asked(run_with_test_drivers: Runner) -> None:
    result = run_with_test_drivers(
        "pytest",
        "--pyargs",
        "drivebay_conformance",
        "--driver",
        "cpcopy",
        "-k",
        "1-gib",
        "-rs",
        "-p",
        "no:cacheprovider",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
    assert SLOW_REASON in result.stdout


def test_a_correct_driver_passes_every_case_it_declares(run_with_test_drivers: Runner, tmp_path: Path) -> None:
    """The cp -a driver passes; it is skipped only where it declares a lack, or where a second driver is needed."""
    report = tmp_path / "report.json"
    result = run_with_test_drivers(
        "pytest", "--pyargs", "drivebay_conformance", "--driver", "cpcopy", "-p", "no:cacheprovider",
        "-p", "drivebay_conformance.report", f"--conformance-report={report}", "-q", "-rfEs",
    )  # fmt: skip
    assert report.exists(), result.stdout[-3000:] + result.stderr[-3000:]
    cases = json.loads(report.read_text())["cpcopy"]
    failed = {case: e["reason"].splitlines()[:2] for case, e in cases.items() if e["outcome"] in ("failed", "error")}
    assert not failed, f"the cp -a driver fails: {failed}"
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    skipped = {case: e["reason"] for case, e in cases.items() if e["outcome"] == "skipped"}
    allowed = ("declares", SLOW_REASON, "slow case", "needs two graph drivers")
    assert all(any(word in reason for word in allowed) for reason in skipped.values()), skipped
    assert sum(e["outcome"] == "passed" for e in cases.values()) >= 40


def test_a_broken_driver_fails_naming_the_driver_the_layers_and_the_first_difference(
    run_with_test_drivers: Runner,
) -> None:
    """``broken`` copies parents with shutil.copytree, which splits hardlinks and drops owners."""
    result = run_with_test_drivers(
        "pytest", "--pyargs", "drivebay_conformance", "--driver", "broken", "-k", "a_child_sees_its_parent_exactly",
        "-p", "no:cacheprovider",
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "test_a_child_sees_its_parent_exactly[broken]" in out
    assert "driver 'broken', layers base -> second vs both tars applied to a directory: trees differ" in out
    assert (
        "first difference at /bin/busybox, field hardlinks: expected has [/bin/busybox-hardlink], "
        "layer 'second' has [no other links]"
    ) in out
    assert "/data/owned: uid 1000 != 0" in out


def test_the_conformance_command_prints_json_and_fails_for_a_broken_driver(run_with_test_drivers: Runner) -> None:
    result = run_with_test_drivers("drivebay.cli.main", "conformance", "--driver", "broken", "--json")
    assert result.returncode == 1, result.stderr[-3000:]
    matrix = json.loads(result.stdout)
    assert list(matrix) == ["broken"]
    child = matrix["broken"]["test_a_child_sees_its_parent_exactly"]
    assert child["outcome"] == "failed"
    assert "first difference at /bin/busybox, field hardlinks" in child["reason"]
    assert matrix["broken"]["test_a_file_kind_written_in_a_container_survives_commit[file-over-1-gib]"] == {
        "outcome": "skipped",
        "reason": SLOW_REASON,
    }
    assert "passed" in {e["outcome"] for e in matrix["broken"].values()}


def test_the_matrix_shows_each_outcome_with_its_reason() -> None:
    console = Console(record=True, width=200)
    render_matrix(
        {
            "vfs": {
                "case_a[fifo]": {"outcome": "passed", "reason": ""},
                "case_b": {"outcome": "skipped", "reason": "x"},
            },
            "overlay2": {"case_a[fifo]": {"outcome": "failed", "reason": "[Errno 36] at /etc, field mtime\nmore"}},
        },
        console,
    )
    text = console.export_text()
    assert "case_a[fifo]" in text and "pass" in text
    assert "FAIL: [Errno 36] at /etc, field mtime" in text and "more" not in text
    assert "skip: x" in text
    assert "1 failed, 1 passed, 1 skipped across 2 driver(s)" in text


def test_an_unknown_driver_makes_the_command_fail_in_one_line(run_with_test_drivers: Runner) -> None:
    result = run_with_test_drivers("drivebay.cli.main", "conformance", "--driver", "nosuch")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("drivebay: no graph driver named 'nosuch' is installed"), lines
