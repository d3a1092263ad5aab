"""Whiteouts and changes: what a user deletes, replaces, moves or re-stamps in a container layer
comes out of ``changes``, ``diff`` and ``apply_diff`` exactly, and stays so in children."""

from __future__ import annotations

import pytest

from drivebay.testing.tars import tar_names
from drivebay_conformance.harness import DriverCase, require_capability
from drivebay_conformance.scenarios import EDITS, UNTOUCHED, Edit
from drivebay_conformance.trees import (
    BASE_MTIME,
    base_layer,
    directory,
    file,
    opaque,
    whiteout,
)


@pytest.mark.parametrize("edit", EDITS, ids=[e.name for e in EDITS])
def test_a_change_in_a_child_comes_out_of_changes_diff_and_apply(driver_case: DriverCase, edit: Edit) -> None:
    """The edit shows in the container's view and in ``changes`` (equal to core's tree comparison); ``diff``
    carries it in the OCI layer format; applied onto the same parent it gives an identical layer, whose empty
    child still shows it (a file deleted in a lower layer stays deleted in an empty child)."""
    if edit.capability:
        require_capability(driver_case, edit.capability)
    graph = driver_case.graph
    driver_case.apply_nodes("base", None, base_layer())
    graph.create_rw("rw", "base")
    with graph.mounted("rw") as view:
        edit.edit(view)
    chain = driver_case.chain("rw")
    with graph.mounted("rw") as view:
        assert edit.shows(view), f"{chain}: after '{edit.name}' the view does not show it"

    changes = [str(c) for c in graph.changes("rw")]
    missing = [line for line in edit.expect if line not in changes]
    assert not missing, f"{chain}: changes after '{edit.name}' lack {missing}; got {changes}"
    wrong = [line for line in changes if line in edit.absent or line[2:] in UNTOUCHED]
    assert not wrong, f"{chain}: changes after '{edit.name}' wrongly hold {wrong}; got {changes}"
    naive = [str(c) for c in graph.naive_changes("rw", "base")]
    assert changes == naive, (
        f"{chain}: the driver's changes after '{edit.name}' differ from core's tree comparison: "
        f"only driver {sorted(set(changes) - set(naive))}, only core {sorted(set(naive) - set(changes))}"
    )

    commit = driver_case.commit("rw", "committed")
    names = tar_names(commit.tar.read_bytes())
    for group in edit.whiteouts:
        assert any(name in names for name in group), f"{chain}: the diff of '{edit.name}' lacks {group}; has {names}"
    for tree in edit.deleted:
        below = [name for name in names if name.startswith(tree + "/")]
        assert not below, f"{chain}: the diff of '{edit.name}' carries entries below the deleted {tree}: {below}"
    driver_case.assert_same_view("rw", "committed", what=f"'{edit.name}' committed onto a sibling")
    graph.create("child", "committed")
    driver_case.assert_same_view("committed", "child", what=f"an empty child of the committed '{edit.name}'")
    assert [str(c) for c in graph.changes("committed")] == changes, (
        f"{driver_case.chain('committed')}: the committed layer reports other changes than the container it came from"
    )
    driver_case.assert_applied_size("committed", commit.size)


WHITEOUT_LAYER = [
    directory("data", mtime=BASE_MTIME + 100),
    directory("data/dir", mtime=BASE_MTIME + 101),
    opaque("data/dir"),
    file("data/dir/c.txt", b"new\n", mtime=BASE_MTIME + 102),
    # After data/dir/c.txt, as Docker orders whiteouts (by the deleted name).
    whiteout("data/a.txt"),
    directory("etc", mtime=BASE_MTIME + 103),
    whiteout("etc/motd"),
    directory("usr", mtime=BASE_MTIME + 20),
    directory("usr/share", mtime=BASE_MTIME + 104),
    whiteout("usr/share/doc"),
]


def test_whiteouts_in_an_applied_tar_hide_lower_files_in_every_child(driver_case: DriverCase) -> None:
    """A Docker-style tar with ``.wh.`` files and an opaque directory deletes what it names from the lower
    layers; the layer and an empty child of it show the same tree as applying both tars to a directory."""
    graph = driver_case.graph
    driver_case.apply_nodes("base", None, base_layer())
    driver_case.apply_nodes("deleting", "base", WHITEOUT_LAYER)
    graph.create("child", "deleting")
    reference = driver_case.reference("expected", base_layer(), WHITEOUT_LAYER)
    driver_case.assert_view_matches("child", reference, "the tars applied to a directory")
    changes = [str(c) for c in graph.changes("deleting")]
    for line in ("D /data/a.txt", "D /data/dir/b.txt", "A /data/dir/c.txt", "D /etc/motd", "D /usr/share/doc"):
        assert line in changes, f"{driver_case.chain('deleting')}: changes lack {line!r}; got {changes}"
    assert graph.changes("child") == []
