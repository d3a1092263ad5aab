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
    """Diffing the same layer twice gives the same bytes: the same diff ID."""
    _busy(driver_case)
    _, sha = driver_case.diff("rw")
    _, again = driver_case.diff("rw")
    assert again == sha, f"{driver_case.chain('rw')}: two diffs of an unchanged layer differ: sha256 {sha} then {again}"


def test_a_layer_made_from_a_diff_diffs_to_the_same_bytes(driver_case: DriverCase) -> None:
    """The same tree on the same parent gives the same diff ID: the layer a container's diff was applied to
    diffs to exactly that tar again (whiteouts included), so a commit can be verified by its sha256."""
    _busy(driver_case)
    commit = driver_case.commit("rw", "committed")
    _, committed = driver_case.diff("committed")
    assert committed == commit.sha256, (
        f"{driver_case.chain('committed')}: the layer made from a diff diffs to other bytes: "
        f"sha256 {committed}, the container's diff was {commit.sha256} ({commit.tar}); "
        f"compare the two with 'tar --full-time -tvf'"
    )
