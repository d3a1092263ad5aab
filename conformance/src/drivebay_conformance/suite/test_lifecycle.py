"""Refcounting and lifecycle: get/put counts, removal rules, cleanup, exists/status/metadata, reopening, mounts()."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from drivebay.errors import LayerExists, LayerInUse, LayerNotFound
from drivebay.fs.mounts import MS_BIND, MS_RDONLY, MS_REC, MS_REMOUNT, is_mountpoint, mount, mounts_under, unmount
from drivebay.hookspecs.graph import Mount
from drivebay.testing.treecompare import assert_same_tree, snapshot_tree
from drivebay_conformance.harness import VIEW_IGNORE, DriverCase
from drivebay_conformance.trees import base_layer, file


def _two_layers(case: DriverCase) -> None:
    case.apply_nodes("base", None, base_layer())
    case.graph.create_rw("rw", "base")


def _mounts_under_home(case: DriverCase) -> list[str]:
    home = Path(os.path.realpath(case.home))
    return [str(m.mount_point) for m in mounts_under(home) if m.mount_point != home]


def test_hook_graph_get_counts_references_and_the_last_put_releases(driver_case: DriverCase) -> None:
    """A second get returns the same path and counts; the view stays readable until the last put."""
    graph = driver_case.graph
    _two_layers(driver_case)
    first = graph.get("rw")
    second = graph.get("rw")
    assert first == second, f"{driver_case.chain('rw')}: a second get returned {second}, the first {first}"
    assert first.is_absolute()
    assert graph.refcount("rw") == 2
    mounted = is_mountpoint(first)
    graph.put("rw")
    assert graph.refcount("rw") == 1
    assert (first / "etc" / "passwd").is_file(), f"{driver_case.chain('rw')}: the view went away with one get left"
    graph.put("rw")
    assert graph.refcount("rw") == 0
    if mounted:
        assert not is_mountpoint(first), f"{driver_case.chain('rw')}: still mounted at {first} after the last put"
    with pytest.raises(LayerInUse):
        graph.put("rw")


def test_hook_graph_get_adopts_the_mount_of_another_process(driver_case: DriverCase) -> None:
    """A second driver instance on the same root (the next CLI process) gets the same path and shares the count."""
    _two_layers(driver_case)
    path = driver_case.graph.get("rw")
    other = driver_case.open()
    assert other.get("rw") == path
    assert other.refcount("rw") == 2
    other.put("rw")
    assert (path / "etc" / "passwd").is_file(), (
        f"{driver_case.chain('rw')}: one put from the other process unmounted it"
    )
    driver_case.graph.put("rw")
    assert driver_case.graph.refcount("rw") == 0


def test_hook_graph_remove_of_a_mounted_layer_fails_or_unmounts_as_declared(driver_case: DriverCase) -> None:
    """Without ``remove_while_mounted``, removing a mounted layer raises ``LayerInUse`` naming it and leaves it
    whole; with it, the layer is unmounted and removed."""
    graph = driver_case.graph
    _two_layers(driver_case)
    path = graph.get("rw")
    if driver_case.capabilities.remove_while_mounted:
        graph.remove("rw")
        assert not graph.exists("rw")
        assert str(path) not in _mounts_under_home(driver_case)
        return
    with pytest.raises(LayerInUse) as info:
        graph.remove("rw")
    assert "rw" in str(info.value), f"the error does not name the layer: {info.value}"
    assert graph.exists("rw")
    assert (path / "etc" / "passwd").is_file()
    graph.put("rw")
    graph.remove("rw")
    assert not graph.exists("rw")


def test_hook_graph_remove_of_a_parent_with_children_is_refused(driver_case: DriverCase) -> None:
    graph = driver_case.graph
    _two_layers(driver_case)
    with pytest.raises(LayerInUse) as info:
        graph.remove("base")
    assert "rw" in str(info.value), f"the error does not name the child: {info.value}"
    assert graph.exists("base")
    graph.remove("rw")
    graph.remove("base")
    assert graph.layers() == []
    assert not driver_case.graph.loaded.hook.graph_exists(layer_id="base"), "the driver still holds removed 'base'"


def test_hook_graph_cleanup_leaves_no_mount_under_home(driver_case: DriverCase) -> None:
    """After mounting several layers, cleanup unmounts everything (per /proc/self/mountinfo), keeps the layers,
    and they mount again afterwards."""
    graph = driver_case.graph
    _two_layers(driver_case)
    driver_case.apply_nodes("second", "base", [file("second.txt", b"2\n")])
    for layer in ("base", "rw", "second", "rw"):
        graph.get(layer)
    graph.cleanup()
    left = _mounts_under_home(driver_case)
    assert left == [], f"driver '{driver_case.name}': cleanup left mounts under {driver_case.home}: {left}"
    assert sorted(graph.layers()) == ["base", "rw", "second"]
    with graph.mounted("rw") as view:
        assert (view / "etc" / "passwd").is_file()


def test_hook_graph_exists_status_and_metadata_describe_the_layers(driver_case: DriverCase) -> None:
    graph = driver_case.graph
    assert not graph.exists("base")
    _two_layers(driver_case)
    assert graph.exists("base") and graph.exists("rw")
    assert graph.loaded.hook.graph_exists(layer_id="rw") is True
    status = graph.status()
    assert status and all(isinstance(k, str) and isinstance(v, str) for k, v in status), (
        f"driver '{driver_case.name}': status must be (str, str) pairs, got {status!r}"
    )
    meta = graph.metadata("rw")
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()), (
        f"driver '{driver_case.name}': metadata must map str to str, got {meta!r}"
    )
    for call in (lambda: graph.metadata("missing"), lambda: graph.get("missing"), lambda: graph.remove("missing")):
        with pytest.raises(LayerNotFound):
            call()
    with pytest.raises(LayerExists):
        graph.create("base")
    with pytest.raises(LayerNotFound):
        graph.create("orphan", "missing")
    assert not graph.exists("orphan")
    graph.remove("rw")
    assert not graph.exists("rw")
    assert graph.loaded.hook.graph_exists(layer_id="rw") is False


def test_hook_graph_init_readopts_layers_left_by_an_earlier_process(driver_case: DriverCase) -> None:
    """A fresh driver instance on the same root sees the same layers with the same contents."""
    _two_layers(driver_case)
    with driver_case.graph.mounted("rw") as view:
        (view / "written").write_bytes(b"kept\n")
    # Snapshot from a fresh mount: FUSE-based views may stamp a file's mtime when it is flushed, after close.
    with driver_case.graph.mounted("rw") as view:
        before = snapshot_tree(view)
    driver_case.graph.cleanup()
    reopened = driver_case.open()
    assert sorted(reopened.layers()) == ["base", "rw"]
    with reopened.mounted("rw") as view:
        assert_same_tree(
            before, view, f"{driver_case.chain('rw')} reopened", ignore=VIEW_IGNORE, fields=driver_case.fields
        )


FUSE_TYPES = ("fuse.", "fuse3.")
_FLAGS = {"ro": MS_RDONLY, "bind": MS_BIND, "rbind": MS_BIND | MS_REC}


def _mount_as_described(mounts: Sequence[Mount], target: Path) -> int:
    """Perform ``mounts`` on ``target`` as containerd would; returns how many were made."""
    made = 0
    for m in mounts:
        flags = 0
        data = []
        for option in m.options:
            if option in _FLAGS:
                flags |= _FLAGS[option]
            elif option != "rw":
                data.append(option)
        if m.type.startswith(FUSE_TYPES):
            # As containerd does: "fuse3.fuse-overlayfs" runs mount.fuse3 with the subtype fuse-overlayfs.
            helper, _, subtype = m.type.partition(".")
            options = ["-o", ",".join(m.options)] if m.options else []
            subprocess.run([f"mount.{helper}", m.source, str(target), *options, "-t", subtype], check=True)
            made += 1
        elif m.type == "bind" or flags & MS_BIND:
            mount(m.source, target, None, flags & ~MS_RDONLY)
            made += 1
            if flags & MS_RDONLY:
                mount("none", target, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
        else:
            mount(m.source, target, m.type, flags, ",".join(data))
            made += 1
    return made


def test_hook_graph_mounts_describes_a_mount_that_shows_the_same_tree(driver_case: DriverCase) -> None:
    """Mounting what ``mounts()`` describes (absolute paths, as containerd does it) shows the layer's view."""
    graph = driver_case.graph
    _two_layers(driver_case)
    with graph.mounted("rw") as view:
        (view / "written").write_bytes(b"written\n")
    with graph.mounted("rw") as view:  # a fresh mount, as in the case above
        expected = snapshot_tree(view)
    plan = graph.mounts("rw")
    described = plan.mounts
    assert described, f"{driver_case.chain('rw')}: mounts() described nothing"
    assert graph.refcount("rw") == (1 if plan.holds_reference else 0), (
        f"{driver_case.chain('rw')}: mounts() says holds_reference={plan.holds_reference} "
        f"but left {graph.refcount('rw')} references"
    )
    target = driver_case.scratch / "containerd-mount"
    target.mkdir()
    made = 0
    try:
        made = _mount_as_described(described, target)
        assert_same_tree(
            expected,
            target,
            f"{driver_case.chain('rw')} mounted from mounts() {described}",
            ignore=VIEW_IGNORE,
            fields=driver_case.fields,
            labels=("the layer's view", "the described mount"),
        )
    finally:
        for _ in range(made):
            unmount(target)
        if plan.holds_reference:
            graph.put("rw")
