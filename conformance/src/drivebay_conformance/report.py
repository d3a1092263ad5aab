"""Collect each case's outcome per driver into a JSON file, for ``drivebay conformance``'s matrix.

Loaded with ``-p drivebay_conformance.report --conformance-report FILE``. The
file holds ``{driver: {case: {"outcome": "passed"|"failed"|"skipped", "reason": str}}}``;
a cross-driver case is listed under its first driver, with the second in its name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from drivebay_conformance.plugin import is_suite_case

Results = dict[str, dict[str, dict[str, str]]]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("drivebay-conformance").addoption(
        "--conformance-report", metavar="FILE", help="write every case's outcome per driver to FILE as JSON"
    )


def case_key(item: pytest.Item) -> tuple[str, str]:
    """``(driver, case)`` for a suite item: the case is the function name plus its non-driver parameters."""
    params: dict[str, Any] = dict(getattr(getattr(item, "callspec", None), "params", {}))
    driver = params.pop("graph_driver_name", None)
    pair = params.pop("graph_driver_pair", None)
    case = getattr(item, "originalname", item.name)
    if isinstance(pair, tuple):
        driver = pair[0]
        params = {"to": pair[1], **params} if pair[1] else params
    if params:
        case += "[" + "-".join(str(getattr(v, "name", v)) for v in params.values()) + "]"
    return str(driver or "(no driver)"), case


def _reason(report: pytest.TestReport) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message)
    return str(report.longrepr or "").strip()


class ResultCollector:
    """Keeps the worst outcome of each item's phases (a failed teardown fails a passed case)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.results: Results = {}
        self.keys: dict[str, tuple[str, str]] = {}

    @pytest.hookimpl
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        self.keys = {item.nodeid: case_key(item) for item in items if is_suite_case(item)}

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        key = self.keys.get(report.nodeid)
        if key is None:
            return
        driver, case = key
        entry = self.results.setdefault(driver, {}).setdefault(case, {"outcome": "passed", "reason": ""})
        if report.failed:
            outcome = "failed" if report.when == "call" else "error"
            if entry["outcome"] not in ("failed", "error"):
                entry.update(
                    outcome=outcome,
                    reason=f"{report.when}: {_reason(report)}" if outcome == "error" else _reason(report),
                )
        elif report.skipped and entry["outcome"] == "passed":
            entry.update(outcome="skipped", reason=_reason(report))

    @pytest.hookimpl
    def pytest_sessionfinish(self) -> None:
        self.path.write_text(json.dumps(self.results, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def pytest_configure(config: pytest.Config) -> None:
    target = config.getoption("conformance_report")
    if target:
        config.pluginmanager.register(ResultCollector(Path(target)), "drivebay-conformance-report")
