"""The graph facade's own duties, over the vfs driver: registry, refcounts, depth, all-or-nothing, crash recovery."""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import subprocess
from pathlib import Path

import pytest

from drivebay.archive import naive_changes, write_changes_tar
from drivebay.errors import (
    DepthLimitExceeded,
    LayerExists,
    LayerHasChildren,
    LayerInUse,
    LayerNotFound,
    UnsafeArchive,
)
from drivebay.facades.graph import GraphDriver
from drivebay.testing.graphs import OpenGraph
from drivebay.testing.tars import layer_tar


@pytest.fixture
def graph(vfs_graphs: OpenGraph) -> GraphDriver:
    return vfs_graphs()


def test_registry_knows_parents_children_and_depth(graph: GraphDriver) -> None:
    graph.create("a")
    graph.create("b", "a")
    graph.create_rw("c", "b")
    assert graph.layers() == ["a", "b", "c"]
    assert (graph.parent("c"), graph.children("a"), graph.depth("c")) == ("b", ["b"], 3)
    assert [(r.id, r.parent, r.rw, r.mounts) for r in graph.records()] == [
        ("a", None, False, 0),
        ("b", "a", False, 0),
        ("c", "b", True, 0),
    ]
    with pytest.raises(LayerExists, match="layer 'b' already exists"):
        graph.create("b")
    with pytest.raises(LayerNotFound, match="layer 'nope' does not exist in storage driver 'vfs'"):
        graph.create("d", "nope")
    with pytest.raises(LayerHasChildren, match="layer 'a' is the parent of b"):
        graph.remove("a")
    graph.remove("c")
    graph.remove("b")
    graph.remove("a")
    assert graph.layers() == [] and list((graph.home / "dir").iterdir()) == []


def test_depth_limit_is_checked_before_the_driver_is_called(graph: GraphDriver) -> None:
    graph.capabilities = dataclasses.replace(graph.capabilities, max_depth=3)
    graph.create("l1")
    graph.create("l2", "l1")
    graph.create("l3", "l2")
    tracer = graph.loaded.tracer
    assert tracer is not None
    tracer.reset()
    with pytest.raises(DepthLimitExceeded, match=r"4 layers deep.*at most 3"):
        graph.create("l4", "l3")
    assert tracer.totals() == {}, "no driver hook runs for a refused layer"
    assert not graph.exists("l4")


def test_refcounts_are_shared_by_every_facade_on_the_root(vfs_graphs: OpenGraph) -> None:
    first, second = vfs_graphs(), vfs_graphs()
    first.create("a")
    path = first.get("a")
    assert second.get("a") == path
    assert (first.refcount("a"), second.refcount("a")) == (2, 2)
    with pytest.raises(LayerInUse, match="mounted \\(2 reference"):
        second.remove("a")
    second.put("a")
    first.put("a")
    with pytest.raises(LayerInUse, match="not mounted"):
        first.put("a")
    with pytest.raises(LayerNotFound):
        first.put("never-created")
    second.remove("a")
    assert not first.exists("a")


def test_default_mounts_take_a_reference(graph: GraphDriver) -> None:
    graph.create_rw("c")
    plan = graph.mounts("c")
    (mount,) = plan.mounts
    assert (mount.type, mount.source, mount.options) == ("bind", str(graph.home / "dir" / "c"), ("rbind", "rw"))
    assert plan.holds_reference and graph.refcount("c") == 1
    graph.put("c")


def test_a_failed_apply_leaves_nothing(graph: GraphDriver) -> None:
    graph.create("base")
    with pytest.raises(UnsafeArchive):
        graph.create_from_tar("bad", "base", io.BytesIO(layer_tar({"ok": b"ok\n", "../../escape": b"x"})))
    assert graph.layers() == ["base"]
    assert not graph.loaded.hook.graph_exists(layer_id="bad")
    assert graph.children("base") == []


def test_apply_diff_to_an_existing_layer_and_compressed_input(graph: GraphDriver) -> None:
    graph.create("base")
    size = graph.apply_diff("base", io.BytesIO(gzip.compress(layer_tar({"hello": b"hello\n"}))))
    assert size == 6
    with graph.mounted("base") as view:
        assert (view / "hello").read_text() == "hello\n"
    assert [str(c) for c in graph.changes("base")] == ["A /hello"]


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_layers_left_half_made_by_a_dead_process_are_removed_at_the_next_open(
    vfs_graphs: OpenGraph, tmp_path: Path
) -> None:
    graph = vfs_graphs()
    graph.create("kept")
    graph.create("half", "kept")
    pid = dead_pid()
    with graph.state.transaction() as db:
        db.execute("UPDATE graph_layers SET state='creating', pid=? WHERE id='half'", (pid,))
    assert graph.layers() == ["kept"], "a layer being created is not visible"
    assert (tmp_path / "vfs" / "dir" / "half").is_dir()
    reopened = vfs_graphs()
    assert reopened.layers() == ["kept"]
    assert not (tmp_path / "vfs" / "dir" / "half").exists()
    assert reopened.children("kept") == []


def test_a_live_process_layer_is_left_alone(vfs_graphs: OpenGraph) -> None:
    graph = vfs_graphs()
    graph.create("busy")
    with subprocess.Popen(["sleep", "30"]) as sleeper:
        try:
            with graph.state.transaction() as db:
                db.execute("UPDATE graph_layers SET state='creating', pid=? WHERE id='busy'", (sleeper.pid,))
            vfs_graphs()
            assert graph.loaded.hook.graph_exists(layer_id="busy"), "another live process is still creating it"
        finally:
            sleeper.kill()


def test_the_naive_diff_of_a_parentless_layer_is_the_changes_tar_of_everything(graph: GraphDriver) -> None:
    """Without a parent the naive diff writes the whole tree; its bytes are those of the comparison with nothing."""
    graph.create_rw("base")
    with graph.mounted("base") as root:
        (root / "dir" / "sub").mkdir(parents=True)
        for name in ("b", "a", "-dash", ".hidden", "é"):
            (root / "dir" / name).write_bytes(name.encode() * 100)
        os.link(root / "dir" / "a", root / "dir" / "sub" / "a-link")
        os.symlink("../a", root / "dir" / "sub" / "a-symlink")
        os.mkfifo(root / "fifo")
        os.setxattr(root / "dir" / "b", "user.note", b"kept")
        os.utime(root / "dir" / "a", ns=(1, 1_700_000_000_123_456_789))
        compared = io.BytesIO()
        write_changes_tar(compared, root, naive_changes(root, None))
    written = io.BytesIO()
    graph.naive_diff("base", None, written)
    assert written.getvalue() == compared.getvalue()
    assert len(written.getvalue()) > 10 * 512
