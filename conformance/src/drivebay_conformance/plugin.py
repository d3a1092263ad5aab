"""The pytest plugin (entry point ``pytest11: drivebay_conformance``): options, driver parametrization, fixtures.

Loaded in every pytest run of an environment where the package is installed,
so it only acts on the suite's own cases (functions defined in
``drivebay_conformance.suite``, wherever they were imported into):

- ``--driver NAME`` (repeatable; ini ``drivebay_drivers``) narrows the graph
  drivers; default: every installed one.
- ``--run-slow`` runs the cases marked ``slow`` (the 1 GiB file, 500-deep chains).
- Fixtures: ``graph_driver_name`` (one installed driver per case),
  ``driver_case`` (that driver opened on a fresh root, see
  :mod:`drivebay_conformance.harness`), ``graph`` (its facade),
  ``driver_case_on`` (a function opening it on a loop filesystem of a given type),
  ``graph_driver_pair``/``driver_pair`` (two different drivers, for cross-driver cases).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from drivebay.loader import KINDS, installed_drivers

if TYPE_CHECKING:
    from drivebay.facades.graph import GraphDriver
    from drivebay_conformance.harness import DriverCase

# This module is imported in every pytest run of the environment: it imports the suite's harness (and so
# drivebay's facades and archive code) only in the fixtures that need it.
SUITE_PACKAGE = "drivebay_conformance.suite"
SLOW_REASON = "slow case: run with --run-slow"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("drivebay-conformance", "drivebay graph driver conformance suite")
    group.addoption(
        "--driver",
        action="append",
        default=[],
        metavar="NAME",
        dest="drivebay_drivers",
        help="run the conformance suite against this installed graph driver only (repeatable)",
    )
    group.addoption(
        "--run-slow",
        action="store_true",
        default=False,
        dest="drivebay_run_slow",
        help="also run conformance cases marked slow (1 GiB file, 500-deep layer chains)",
    )
    group.addoption(
        "--filesystem",
        default=None,
        metavar="FSTYPE",
        dest="drivebay_filesystem",
        help="give every case a fresh loop-mounted filesystem of this type (xfs, ext4, btrfs) for its root",
    )
    parser.addini("drivebay_drivers", type="args", help="default graph drivers for the conformance suite")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a conformance case that takes minutes; runs only with --run-slow")
    if config.getoption("drivebay_drivers") or config.getini("drivebay_drivers"):
        selected_drivers(config)  # an unknown driver name is a usage error before anything is collected


def is_suite_case(item: pytest.Item) -> bool:
    function = getattr(item, "function", None)
    return bool(function is not None and function.__module__.startswith(SUITE_PACKAGE))


def selected_drivers(config: pytest.Config) -> list[str]:
    """The drivers to run: ``--driver`` names, else the ini list, else every installed graph driver."""
    installed = [d.name for d in installed_drivers(KINDS["graph"])]
    wanted: list[str] = config.getoption("drivebay_drivers") or list(config.getini("drivebay_drivers"))
    unknown = [name for name in wanted if name not in installed]
    if unknown:
        raise pytest.UsageError(
            f"--driver {', '.join(unknown)}: no such graph driver is installed "
            f"(installed: {', '.join(installed) or 'none'}); pip install the driver's distribution"
        )
    return list(dict.fromkeys(wanted)) or installed


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "graph_driver_name" in metafunc.fixturenames:
        names = selected_drivers(metafunc.config)
        params: list[object] = list(names) or [
            pytest.param(None, marks=pytest.mark.skip(reason="no graph driver is installed"))
        ]
        metafunc.parametrize("graph_driver_name", params, ids=lambda n: str(n))
    if "graph_driver_pair" in metafunc.fixturenames:
        metafunc.parametrize("graph_driver_pair", driver_pairs(metafunc.config), ids=pair_id)


def pair_id(pair: object) -> str:
    return "->".join(pair) if isinstance(pair, tuple) else str(pair)


def driver_pairs(config: pytest.Config) -> list[object]:
    """Every ordered pair of different selected drivers (all installed ones when none is named)."""
    selected = selected_drivers(config)
    pairs: list[object] = list(itertools.permutations(selected, 2))
    if pairs:
        return pairs
    reason = f"needs two graph drivers; selected: {', '.join(selected) or 'none'} (name another with --driver)"
    # One skipped case per lone driver, so the matrix shows it under that driver.
    return [pytest.param((name, ""), id=name, marks=pytest.mark.skip(reason=reason)) for name in selected] or [
        pytest.param(None, marks=pytest.mark.skip(reason=reason))
    ]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("drivebay_run_slow"):
        return
    for item in items:
        if is_suite_case(item) and item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.skip(reason=SLOW_REASON))


@pytest.fixture
def run_slow(request: pytest.FixtureRequest) -> bool:
    """Whether ``--run-slow`` was given, for cases that turn slow only for some drivers."""
    return bool(request.config.getoption("drivebay_run_slow"))


@pytest.fixture
def case_filesystem(request: pytest.FixtureRequest) -> str | None:
    """The ``--filesystem`` every case root is made on, or ``None`` for the temporary directory's own."""
    fstype: str | None = request.config.getoption("drivebay_filesystem")
    return fstype


@pytest.fixture
def driver_case(graph_driver_name: str, tmp_path: Path, case_filesystem: str | None) -> Iterator[DriverCase]:
    from drivebay_conformance.harness import open_driver_case

    with open_driver_case(graph_driver_name, tmp_path, fstype=case_filesystem) as case:
        yield case


@pytest.fixture
def driver_case_on(graph_driver_name: str, tmp_path: Path) -> Iterator[Callable[[str], DriverCase]]:
    """Open the driver on a fresh loop-mounted filesystem of the type given (as the quota cases need)."""
    from drivebay_conformance.harness import open_driver_case

    with ExitStack() as stack:

        def opener(fstype: str) -> DriverCase:
            return stack.enter_context(open_driver_case(graph_driver_name, tmp_path / fstype, fstype=fstype))

        yield opener


@pytest.fixture
def graph(driver_case: DriverCase) -> GraphDriver:
    return driver_case.graph


@pytest.fixture
def driver_pair(
    graph_driver_pair: tuple[str, str], tmp_path: Path, case_filesystem: str | None
) -> Iterator[tuple[DriverCase, DriverCase]]:
    from drivebay_conformance.harness import open_driver_case

    first, second = graph_driver_pair
    with (
        open_driver_case(first, tmp_path / "a", fstype=case_filesystem) as a,
        open_driver_case(second, tmp_path / "b", fstype=case_filesystem) as b,
    ):
        yield a, b
