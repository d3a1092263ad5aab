"""Diff and apply round trip: a container's diff applied onto its parent gives the same tree, and diffs are stable."""

from __future__ import annotations

from drivebay_conformance.harness import DriverCase
from drivebay_conformance.scenarios import busy_container, supported_by
from drivebay_conformance.trees import base_layer


def _busy(case: DriverCase) -> None:
    case.apply_nodes("base", None, base_layer())
    case.graph.create_rw("rw", "base")
    with case.graph.mounted("rw") as view:
        busy_container(view, supported_by(case.capabilities))


def test_a_diff_applied_onto_a_sibling_gives_the_same_tree_and_size(driver_case: DriverCase) -> None:
    """Every file kind and edit at once in one container: its diff applied onto the same parent shows an
    identical tree (content, mode, owner, xattrs, ns mtime, hardlink identity); ``apply_diff``'s size equals
    ``diff_size`` of both layers."""
    graph = driver_case.graph
    _busy(driver_case)
    commit = driver_case.commit("rw", "committed")
    driver_case.assert_same_view("rw", "committed", what="a busy container committed onto a sibling")
    sizes = {
        "apply_diff": commit.size,
        "diff_size(rw)": graph.diff_size("rw"),
        "diff_size(committed)": graph.diff_size("committed"),
    }
    assert len(set(sizes.values())) == 1, f"{driver_case.chain('committed')}: sizes disagree: {sizes}"


def test_a_second_diff_is_byte_identical(driver_case: DriverCase) -> None:
    """Diffing the same layer twice gives the same bytes (the same diff ID), and so does diffing the layer that
    the first diff was applied to: a commit can be verified by its sha256."""
    _busy(driver_case)
    commit = driver_case.commit("rw", "committed")
    _, again = driver_case.diff("rw")
    assert again == commit.sha256, (
        f"{driver_case.chain('rw')}: two diffs of an unchanged layer differ: sha256 {commit.sha256} then {again}"
    )
    _, committed = driver_case.diff("committed")
    assert committed == commit.sha256, (
        f"{driver_case.chain('committed')}: the layer made from a diff diffs to other bytes: "
        f"sha256 {committed}, the container's diff was {commit.sha256}"
    )
