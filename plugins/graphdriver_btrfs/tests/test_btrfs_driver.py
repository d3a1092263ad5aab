"""The btrfs driver through core's facade, on a loop-mounted btrfs per test."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivebay.errors import DriverNotSupported, InvalidConfig, LayerHasChildren, LayerNotFound
from drivebay.facades.graph import GraphDriver
from drivebay.fs import btrfs
from drivebay.fs.backing import backing_filesystem
from drivebay.loader import KINDS, load_driver
from drivebay.state import StateDB
from drivebay.testing.graphs import OpenGraph
from drivebay.testing.scratchfs import scratch_filesystem_or_skip, write_random


@pytest.fixture
def non_btrfs_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory on ext4: ``tmp_path`` itself when it is not on btrfs, else a loop-mounted ext4."""
    if backing_filesystem(tmp_path) != "btrfs":
        yield tmp_path / "root"
        return
    with scratch_filesystem_or_skip("ext4", size_mb=64, parent=tmp_path) as mount_point:
        yield mount_point / "root"


def test_probe_and_init_refuse_a_home_not_on_btrfs(non_btrfs_dir: Path) -> None:
    loaded = load_driver(KINDS["graph"], "btrfs")
    fstype = backing_filesystem(non_btrfs_dir)
    assert loaded.hook.graph_probe(home=non_btrfs_dir / "btrfs") == f"backing fs is {fstype}, not btrfs"
    state = StateDB.for_root(non_btrfs_dir)
    try:
        with pytest.raises(DriverNotSupported, match=f"backing fs is {fstype}, not btrfs"):
            GraphDriver(loaded, non_btrfs_dir / "btrfs", state, {})
    finally:
        state.close()


def test_probe_accepts_a_home_on_btrfs_that_does_not_exist_yet(btrfs_root: Path) -> None:
    loaded = load_driver(KINDS["graph"], "btrfs")
    assert loaded.hook.graph_probe(home=btrfs_root / "not" / "yet") is None


def test_layer_lifecycle(graph: GraphDriver, btrfs_root: Path) -> None:
    graph.create_rw("base")
    with graph.mounted("base") as root:
        assert root == btrfs_root / "btrfs" / "subvolumes" / "base"
        (root / "etc").mkdir()
        (root / "etc" / "motd").write_text("hello\n")
    graph.create("image", "base")
    image = graph.get("image")
    try:
        assert (image / "etc" / "motd").read_text() == "hello\n"
        with pytest.raises(OSError) as info:
            (image / "new").write_text("no")
        assert info.value.errno == errno.EROFS
    finally:
        graph.put("image")
    meta = graph.metadata("image")
    assert meta["readonly"] == "true" and int(meta["subvolume_id"]) > 255
    assert graph.metadata("base")["readonly"] == "false"

    graph.create_rw("container", "image")
    with graph.mounted("container") as root:
        (root / "etc" / "motd").write_text("changed\n")
    with graph.mounted("image") as root:
        assert (root / "etc" / "motd").read_text() == "hello\n"

    with pytest.raises(LayerHasChildren):
        graph.remove("image")
    for layer in ("container", "image", "base"):
        graph.remove(layer)
        assert not graph.exists(layer)
    assert os.listdir(btrfs_root / "btrfs" / "subvolumes") == []
    with pytest.raises(LayerNotFound):
        graph.loaded.hook.graph_remove(layer_id="base")
    status = dict(graph.status())
    assert status["Diff Method"].startswith("btrfs generation")
    assert status["Build Version"].startswith("btrfs-progs v")
    assert status["Quota"] == "disabled"


def test_remove_deletes_nested_subvolumes_a_container_made(graph: GraphDriver, btrfs_root: Path) -> None:
    graph.create_rw("base")
    graph.create("image", "base")
    graph.create_rw("container", "image")
    with graph.mounted("container") as root:
        (root / "var" / "lib").mkdir(parents=True)
        btrfs.create_subvolume(root / "var" / "lib" / "inner")
        btrfs.create_subvolume(root / "var" / "lib" / "inner" / "deeper")
        btrfs.snapshot(root / "var" / "lib" / "inner", root / "snap", readonly=True)
        (root / "var" / "lib" / "inner" / "deeper" / "file").write_text("x")
    graph.remove("container")
    assert not graph.exists("container")
    assert sorted(os.listdir(btrfs_root / "btrfs" / "subvolumes")) == ["base", "image"]
    # Nothing of the nested subvolumes is left in the filesystem's subvolume list.
    listed = subprocess.run(
        ["btrfs", "subvolume", "list", str(btrfs_root)], check=True, capture_output=True, text=True
    ).stdout
    assert "inner" not in listed and "snap" not in listed


def test_size_limits_writes_and_is_applied_again_after_a_restart(open_graph: OpenGraph, btrfs_root: Path) -> None:
    graph = open_graph()
    graph.create_rw("base")
    graph.create("image", "base")
    graph.create_rw("limited", "image", {"size": "20M"})
    graph.create_rw("free", "image")
    assert graph.metadata("limited")["size"] == str(20 << 20)
    assert dict(graph.status())["Quota"] == "enabled"
    with graph.mounted("limited") as root, pytest.raises(OSError) as info:
        write_random(root / "big", 40 << 20)
    assert info.value.errno == errno.EDQUOT
    with graph.mounted("free") as root:
        write_random(root / "big", 40 << 20)

    # A restart on a filesystem whose qgroups were switched off meanwhile.
    subprocess.run(["btrfs", "quota", "disable", str(btrfs_root)], check=True, capture_output=True)
    assert not btrfs.quota_enabled(btrfs_root)
    again = open_graph()
    assert btrfs.quota_enabled(btrfs_root)
    with again.mounted("limited") as root:
        (root / "big").unlink()
        with pytest.raises(OSError) as info:
            write_random(root / "big2", 40 << 20)
    assert info.value.errno == errno.EDQUOT


def test_min_space_refuses_smaller_sizes(open_graph: OpenGraph) -> None:
    graph = open_graph({"btrfs.min_space": "100M"})
    graph.create_rw("base")
    with pytest.raises(InvalidConfig, match=r"btrfs\.min_space"):
        graph.create_rw("small", "base", {"size": "50M"})
    assert not graph.exists("small")
    graph.create_rw("big", "base", {"size": "200M"})
    assert graph.metadata("big")["size"] == str(200 << 20)


def test_bad_options_are_refused(open_graph: OpenGraph) -> None:
    with pytest.raises(InvalidConfig, match=r"no option 'btrfs\.bogus'"):
        open_graph({"btrfs.bogus": "1"})
    with pytest.raises(InvalidConfig, match="not a size"):
        open_graph({"btrfs.min_space": "lots"})
    graph = open_graph()
    with pytest.raises(InvalidConfig, match="per-layer option 'inodes'"):
        graph.create_rw("x", None, {"inodes": "5"})
