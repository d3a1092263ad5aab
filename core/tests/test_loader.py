"""Loader: drivers are found by entry point, imported only when loaded, and checked against the hookspecs.

Test drivers are real distributions: a module and a ``.dist-info`` with an
``entry_points.txt`` written into a directory put on ``sys.path``.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from stevedore.extension import ExtensionManager

from drivebay.errors import DriverContractError, DriverNotFound
from drivebay.loader import (
    KINDS,
    check_contract,
    installed_driver_names,
    installed_drivers,
    load_driver,
    suggested_distribution,
)

GRAPH = KINDS["graph"]

COMPLETE_DRIVER = '''
from pathlib import Path
from drivebay import hookimpl
from drivebay.hookspecs.graph import GraphCapabilities

IMPORTED = True


class Driver:
    @hookimpl
    def graph_capabilities(self):
        return GraphCapabilities(native_diff=False, quota=False, max_depth=1)

    @hookimpl
    def graph_probe(self, home):
        return None

    @hookimpl
    def graph_init(self, home, options):
        pass

    @hookimpl
    def graph_create(self, layer_id, parent, storage_opts):
        pass

    @hookimpl
    def graph_create_rw(self, layer_id, parent, storage_opts):
        pass

    @hookimpl
    def graph_remove(self, layer_id):
        pass

    @hookimpl
    def graph_get(self, layer_id):
        return Path("/")

    @hookimpl
    def graph_put(self, layer_id):
        pass

    @hookimpl
    def graph_exists(self, layer_id):
        return False

    @hookimpl
    def graph_status(self):
        return []

    @hookimpl
    def graph_metadata(self, layer_id):
        return {}

    @hookimpl
    def graph_cleanup(self):
        pass
'''

InstallDriver = Callable[[str, str], str]


@pytest.fixture
def install_driver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InstallDriver]:
    """Install a graph driver ``name`` whose module has ``source``; returns the module name."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    # stevedore keeps one process-wide list of entry points per group; start from the real sys.path.
    monkeypatch.setattr(ExtensionManager, "ENTRY_POINT_CACHE", {})
    modules: list[str] = []

    def install(name: str, source: str) -> str:
        module = f"drivebay_test_driver_{name.replace('-', '_')}"
        (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        dist_info = site / f"drivebay_graphdriver_{name}-0.0.1.dist-info"
        dist_info.mkdir()
        (dist_info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: drivebay-graphdriver-{name}\nVersion: 0.0.1\n", encoding="utf-8"
        )
        (dist_info / "entry_points.txt").write_text(
            f"[drivebay.graphdrivers]\n{name} = {module}:Driver\n", encoding="utf-8"
        )
        importlib.invalidate_caches()
        modules.append(module)
        return module

    try:
        yield install
    finally:
        for module in modules:
            sys.modules.pop(module, None)


def test_listing_reads_metadata_without_importing(install_driver: InstallDriver) -> None:
    module = install_driver("listed", COMPLETE_DRIVER)
    found = {d.name: d for d in installed_drivers(GRAPH)}
    assert found["listed"].distribution == "drivebay-graphdriver-listed"
    assert found["listed"].version == "0.0.1"
    assert found["listed"].target == f"{module}:Driver"
    assert module not in sys.modules, "listing drivers must not import them"


def test_driver_names_come_from_entry_points_without_importing(install_driver: InstallDriver) -> None:
    module = install_driver("named", COMPLETE_DRIVER)
    names = installed_driver_names(GRAPH)
    assert "named" in names
    assert names == [d.name for d in installed_drivers(GRAPH)]
    assert module not in sys.modules, "listing driver names must not import them"


AUDIT_WRAPPER = """
from drivebay import hookimpl

CALLS = []


class Auditor:
    @hookimpl(wrapper=True)
    def graph_exists(self, layer_id):
        CALLS.append(layer_id)
        return (yield)
"""


def test_a_wrapper_from_the_wrappers_group_wraps_the_driver(install_driver: InstallDriver, tmp_path: Path) -> None:
    install_driver("audited", COMPLETE_DRIVER)
    site = tmp_path / "site"
    (site / "drivebay_test_wrapper_audit.py").write_text(AUDIT_WRAPPER, encoding="utf-8")
    dist_info = site / "drivebay_test_wrapper_audit-0.0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: drivebay-test-wrapper-audit\nVersion: 0.0.1\n", encoding="utf-8"
    )
    (dist_info / "entry_points.txt").write_text(
        "[drivebay.wrappers]\naudit = drivebay_test_wrapper_audit:Auditor\n", encoding="utf-8"
    )
    importlib.invalidate_caches()
    try:
        loaded = load_driver(GRAPH, "audited")
        assert loaded.hook.graph_exists(layer_id="x") is False
        assert sys.modules["drivebay_test_wrapper_audit"].CALLS == ["x"]
    finally:
        sys.modules.pop("drivebay_test_wrapper_audit", None)


def test_a_complete_driver_loads_and_answers(install_driver: InstallDriver) -> None:
    install_driver("complete", COMPLETE_DRIVER)
    loaded = load_driver(GRAPH, "complete", timing=True)
    assert loaded.name == "complete"
    assert loaded.hook.graph_exists(layer_id="x") is False
    assert loaded.tracer is not None
    assert list(loaded.tracer.totals()) == ["graph_exists"]
    assert loaded.tracer.totals()["graph_exists"]["calls"] == 1


def test_hooks_run_unwrapped_unless_timing_is_asked_for(install_driver: InstallDriver) -> None:
    install_driver("complete", COMPLETE_DRIVER)
    plain = load_driver(GRAPH, "complete")
    assert plain.tracer is None
    assert plain.manager.get_plugin("drivebay:timing-tracer") is None
    assert plain.hook.graph_exists(layer_id="x") is False
    echoing = load_driver(GRAPH, "complete", echo_timings=True)
    assert echoing.tracer is not None
    assert echoing.manager.get_plugin("drivebay:timing-tracer") is echoing.tracer


def test_a_missing_hook_names_driver_and_hook(install_driver: InstallDriver) -> None:
    source = COMPLETE_DRIVER.replace("    @hookimpl\n    def graph_cleanup(self):\n        pass\n", "")
    assert "graph_cleanup" not in source
    install_driver("nocleanup", source)
    with pytest.raises(DriverContractError) as info:
        load_driver(GRAPH, "nocleanup")
    message = str(info.value)
    assert "'nocleanup'" in message and "'graph_cleanup'" in message and "implement it" in message


def test_a_parameter_not_in_the_spec_is_refused(install_driver: InstallDriver) -> None:
    source = COMPLETE_DRIVER.replace("def graph_remove(self, layer_id)", "def graph_remove(self, id)")
    install_driver("badparam", source)
    with pytest.raises(DriverContractError) as info:
        load_driver(GRAPH, "badparam")
    message = str(info.value)
    assert "'badparam'" in message and "graph_remove" in message


def test_parameters_in_another_order_or_missing_are_refused() -> None:
    """pluggy accepts a subset of the spec's parameters in any order; drivebay wants exactly the spec's list."""
    from drivebay import hookimpl

    class Reordered:
        @hookimpl
        def graph_create(self, parent: str, layer_id: str, storage_opts: dict[str, str]) -> None:
            pass

    namespace: dict[str, type] = {}
    exec(compile(textwrap.dedent(COMPLETE_DRIVER), "<driver>", "exec"), namespace)
    base = namespace["Driver"]
    driver = type("Driver", (Reordered, base), {})()
    with pytest.raises(DriverContractError) as info:
        check_contract(GRAPH, "reordered", driver)
    assert "'graph_create' takes (parent, layer_id, storage_opts)" in str(info.value)
    assert "spec is (layer_id, parent, storage_opts)" in str(info.value)

    class Short:
        @hookimpl
        def graph_get(self) -> Path:
            return Path("/")

    with pytest.raises(DriverContractError, match="'graph_get' takes \\(\\) but the spec is \\(layer_id\\)"):
        check_contract(GRAPH, "short", type("Driver", (Short, base), {})())


def test_a_prefixed_method_that_is_no_hook_is_refused(install_driver: InstallDriver) -> None:
    install_driver(
        "typo",
        COMPLETE_DRIVER + "\n    @hookimpl\n    def graph_snapshot(self, layer_id):\n        pass\n",
    )
    with pytest.raises(DriverContractError) as info:
        load_driver(GRAPH, "typo")
    assert "graph_snapshot" in str(info.value) and "'typo'" in str(info.value)


def test_a_driver_that_fails_to_import_says_so(install_driver: InstallDriver) -> None:
    install_driver("broken", "import drivebay_no_such_module\n" + COMPLETE_DRIVER)
    with pytest.raises(DriverContractError) as info:
        load_driver(GRAPH, "broken")
    message = str(info.value)
    assert "'broken' failed to load" in message
    assert "drivebay_no_such_module" in message
    assert "drivebay-graphdriver-broken" in message


def test_unknown_driver_lists_installed_ones_and_the_pip_name(install_driver: InstallDriver) -> None:
    install_driver("present", COMPLETE_DRIVER)
    with pytest.raises(DriverNotFound) as info:
        load_driver(GRAPH, "zfs")
    message = str(info.value)
    assert "no graph driver named 'zfs'" in message
    assert "present" in message.split("installed:")[1]
    assert "pip install drivebay-graphdriver-zfs" in message
    assert suggested_distribution(KINDS["network"], "macvlan") == "drivebay-netdriver-macvlan"
