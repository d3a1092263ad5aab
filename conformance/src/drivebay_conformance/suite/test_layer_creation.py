"""Layer creation: empty layers, base layers, children that see their parent, committed layers that stay put."""

from __future__ import annotations

import os

from drivebay.testing.tars import tar_names
from drivebay.testing.treecompare import assert_same_tree, snapshot_tree
from drivebay_conformance.harness import VIEW_IGNORE, DriverCase
from drivebay_conformance.trees import base_layer, file


def test_an_empty_layer_shows_an_empty_tree_and_no_changes(driver_case: DriverCase) -> None:
    graph = driver_case.graph
    graph.create("empty")
    with graph.mounted("empty") as view:
        assert list(view.iterdir()) == [], f"{driver_case.chain('empty')}: a new layer is not empty"
    assert graph.changes("empty") == []
    assert graph.diff_size("empty") == 0
    tar, _ = driver_case.diff("empty")
    assert tar_names(tar.read_bytes()) == [], f"{driver_case.chain('empty')}: the diff of an empty layer has entries"


def test_a_base_layer_shows_exactly_the_tree_it_was_made_from(driver_case: DriverCase) -> None:
    """Files, directories, modes with setuid/setgid/sticky bits, owners, symlinks, hardlinks and ns mtimes."""
    nodes = base_layer()
    size = driver_case.apply_nodes("base", None, nodes)
    reference = driver_case.reference("base", nodes)
    driver_case.assert_view_matches("base", reference, "the tar applied to a directory")
    driver_case.assert_applied_size("base", size)


def test_a_child_sees_its_parent_exactly(driver_case: DriverCase) -> None:
    """A layer applied onto a base, an empty read-only child of it and an empty read-write child all show
    exactly the tree of both tars applied to a plain directory, every field."""
    graph = driver_case.graph
    second = [file("second.txt", b"2\n")]
    driver_case.apply_nodes("base", None, base_layer())
    driver_case.apply_nodes("second", "base", second)
    graph.create("ro-child", "second")
    graph.create_rw("rw-child", "second")
    reference = driver_case.reference("expected", base_layer(), second)
    for layer in ("second", "ro-child", "rw-child"):
        driver_case.assert_view_matches(layer, reference, "both tars applied to a directory")
    assert graph.changes("ro-child") == []
    assert graph.changes("rw-child") == []


def test_a_committed_layer_does_not_change_under_a_child(driver_case: DriverCase) -> None:
    """Writing, deleting and chmod-ing in a read-write child leaves the parent and a sibling as they were."""
    graph = driver_case.graph
    driver_case.apply_nodes("base", None, base_layer())
    graph.create("sibling", "base")
    with graph.mounted("base") as view:
        before = snapshot_tree(view)
    graph.create_rw("rw", "base")
    with graph.mounted("rw") as view:
        (view / "etc" / "motd").write_bytes(b"changed\n")
        (view / "data" / "a.txt").unlink()
        os.chmod(view / "bin" / "busybox", 0o700)
        os.lchown(view / "data" / "owned", 0, 0)
        (view / "new").write_bytes(b"new\n")
    for layer in ("base", "sibling"):
        with graph.mounted(layer) as view:
            assert_same_tree(
                before,
                view,
                f"{driver_case.chain(layer)} after writes in the container 'rw'",
                ignore=VIEW_IGNORE,
                fields=driver_case.fields,
            )


def test_a_read_write_layer_on_a_chain_reads_every_layer_and_keeps_its_writes(driver_case: DriverCase) -> None:
    graph = driver_case.graph
    driver_case.apply_nodes("base", None, base_layer())
    driver_case.apply_nodes("mid", "base", [file("mid.txt", b"mid\n"), file("etc/motd", b"from mid\n")])
    graph.create_rw("rw", "mid")
    with graph.mounted("rw") as view:
        assert (view / "mid.txt").read_bytes() == b"mid\n"
        assert (view / "etc" / "motd").read_bytes() == b"from mid\n", "an upper layer's file must hide the lower one"
        assert (view / "etc" / "passwd").is_file()
        (view / "written.txt").write_bytes(b"kept\n")
    with graph.mounted("rw") as view:
        assert (view / "written.txt").read_bytes() == b"kept\n", f"{driver_case.chain('rw')}: a write was lost"
    assert "A /written.txt" in [str(c) for c in graph.changes("rw")]
