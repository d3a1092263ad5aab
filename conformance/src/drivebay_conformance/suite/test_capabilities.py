"""Capabilities and probing: what a driver declares is consistent, and a native diff really is the driver's own."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from drivebay.fs.backing import backing_filesystem
from drivebay.hookspecs.graph import GraphCapabilities
from drivebay_conformance.harness import DriverCase, driver_capabilities, require_root
from drivebay_conformance.scenarios import busy_container, supported_by
from drivebay_conformance.trees import base_layer


def test_hook_graph_capabilities_are_declared_consistently(graph_driver_name: str) -> None:
    """The same answer every time; a positive depth limit; quota names the filesystems it works on."""
    _, first = driver_capabilities(graph_driver_name)
    _, second = driver_capabilities(graph_driver_name)
    assert isinstance(first, GraphCapabilities)
    assert first == second, f"driver '{graph_driver_name}' declares different capabilities on each call"
    assert first.max_depth >= 1
    assert bool(first.quota) == bool(first.quota_filesystems), (
        f"driver '{graph_driver_name}': quota={first.quota} but quota_filesystems={first.quota_filesystems}"
    )


def test_hook_graph_probe_leaves_nothing_and_names_a_missing_filesystem(graph_driver_name: str, tmp_path: Path) -> None:
    """Probing a home that does not exist leaves nothing behind; a driver that requires a filesystem says why
    it cannot run on another one."""
    require_root("probes may mount")
    loaded, capabilities = driver_capabilities(graph_driver_name)
    home = tmp_path / "probe" / graph_driver_name
    reason = loaded.hook.graph_probe(home=home)
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p != home and p != home.parent)
    assert left == [], f"driver '{graph_driver_name}': the probe left {left}"
    required = capabilities.required_filesystem
    if required and backing_filesystem(tmp_path) != required:
        assert isinstance(reason, str) and reason, (
            f"driver '{graph_driver_name}' requires {required} but its probe accepts {backing_filesystem(tmp_path)}"
        )


def test_a_declared_native_diff_is_the_drivers_own(driver_case: DriverCase) -> None:
    """A driver declaring ``native_diff`` answers diff, changes and diff_size itself instead of falling back to
    core's tree comparison (whose results the other cases check it against)."""
    if not driver_case.capabilities.native_diff:
        pytest.skip(f"driver '{driver_case.name}' declares native_diff=False (core's naive diff is used)")
    hook = driver_case.graph.loaded.hook
    driver_case.apply_nodes("base", None, base_layer())
    driver_case.graph.create_rw("rw", "base")
    with driver_case.graph.mounted("rw") as view:
        busy_container(view, supported_by(driver_case.capabilities))
    assert hook.graph_changes(layer_id="rw", parent="base") is not None, "graph_changes fell back to core"
    assert hook.graph_diff_size(layer_id="rw", parent="base") is not None, "graph_diff_size fell back to core"
    assert hook.graph_diff(layer_id="rw", parent="base", out=io.BytesIO()) is True, "graph_diff fell back to core"
