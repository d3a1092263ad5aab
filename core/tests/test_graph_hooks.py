"""One test per graph hook, against the vfs driver through core's facade.

The conformance suite runs the behaviour of every hook against every driver;
these tests pin each hook's contract as documented in docs/graph-hooks.md,
including what core does when an optional hook is absent.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivebay.errors import LayerExists, LayerHasChildren, LayerInUse, LayerNotFound
from drivebay.facades.graph import GraphDriver
from drivebay.hookspecs.graph import GraphCapabilities, Mount
from drivebay.loader import KINDS, load_driver
from drivebay.state import StateDB
from drivebay.testing.graphs import opened_graph_drivers
from drivebay.testing.tars import layer_tar


@pytest.fixture
def vfs(tmp_path: Path) -> Iterator[GraphDriver]:
    with opened_graph_drivers("vfs", tmp_path) as open_graph:
        yield open_graph()


@pytest.fixture
def base(vfs: GraphDriver) -> str:
    vfs.create_from_tar("base", None, io.BytesIO(layer_tar({"etc/motd": b"hello\n", "etc/keep": b"k\n"})))
    return "base"


def test_hook_graph_capabilities(vfs: GraphDriver) -> None:
    caps = vfs.loaded.hook.graph_capabilities()
    assert isinstance(caps, GraphCapabilities)
    assert caps == vfs.capabilities
    assert caps.max_depth >= 128


def test_hook_graph_probe(tmp_path: Path) -> None:
    loaded = load_driver(KINDS["graph"], "vfs")
    assert loaded.hook.graph_probe(home=tmp_path / "not-yet-created" / "vfs") is None
    assert not (tmp_path / "not-yet-created").exists() or not any((tmp_path / "not-yet-created").iterdir())


def test_hook_graph_init(tmp_path: Path) -> None:
    home = tmp_path / "vfs"
    GraphDriver(load_driver(KINDS["graph"], "vfs"), home, StateDB.for_root(tmp_path), {})
    assert home.is_dir()


def test_hook_graph_create(vfs: GraphDriver, base: str) -> None:
    vfs.create("child", base)
    with vfs.mounted("child") as view:
        assert (view / "etc" / "motd").read_text() == "hello\n"
    with pytest.raises(LayerExists):
        vfs.create("child", base)


def test_hook_graph_create_rw(vfs: GraphDriver, base: str) -> None:
    vfs.create_rw("container", base)
    with vfs.mounted("container") as view:
        (view / "new").write_text("x")
    with vfs.mounted(base) as view:
        assert not (view / "new").exists(), "writing a child must not change its parent"


def test_hook_graph_remove(vfs: GraphDriver, base: str) -> None:
    vfs.create_rw("container", base)
    with pytest.raises(LayerHasChildren):
        vfs.remove(base)
    vfs.remove("container")
    assert not vfs.exists("container")
    with pytest.raises(LayerNotFound):
        vfs.remove("container")


def test_hook_graph_get(vfs: GraphDriver, base: str) -> None:
    first = vfs.get(base)
    second = vfs.get(base)
    assert first == second and first.is_absolute()
    assert vfs.refcount(base) == 2
    vfs.put(base)
    vfs.put(base)


def test_hook_graph_put(vfs: GraphDriver, base: str) -> None:
    vfs.get(base)
    with pytest.raises(LayerInUse):
        vfs.remove(base)
    vfs.put(base)
    assert vfs.refcount(base) == 0
    with pytest.raises(LayerInUse, match="not mounted"):
        vfs.put(base)


def test_hook_graph_exists(vfs: GraphDriver, base: str) -> None:
    assert vfs.exists(base)
    assert vfs.loaded.hook.graph_exists(layer_id=base) is True
    assert not vfs.exists("missing")


def test_hook_graph_status(vfs: GraphDriver) -> None:
    status = dict(vfs.status())
    assert status, "status must describe the driver"
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in status.items())


def test_hook_graph_metadata(vfs: GraphDriver, base: str) -> None:
    assert vfs.metadata(base)
    with pytest.raises(LayerNotFound):
        vfs.metadata("missing")


def test_hook_graph_cleanup(vfs: GraphDriver, base: str) -> None:
    vfs.get(base)
    vfs.cleanup()
    assert vfs.refcount(base) == 0


def test_hook_graph_diff(vfs: GraphDriver, base: str) -> None:
    vfs.create_rw("container", base)
    with vfs.mounted("container") as view:
        (view / "etc" / "motd").unlink()
        (view / "etc" / "new").write_text("n\n")
    first, second = io.BytesIO(), io.BytesIO()
    vfs.diff("container", first)
    vfs.diff("container", second)
    assert hashlib.sha256(first.getvalue()).digest() == hashlib.sha256(second.getvalue()).digest()
    first.seek(0)
    with tarfile.open(fileobj=first) as tar:
        names = tar.getnames()
    assert "etc/.wh.motd" in names and "etc/new" in names and "etc/keep" not in names


def test_hook_graph_changes(vfs: GraphDriver, base: str) -> None:
    vfs.create_rw("container", base)
    with vfs.mounted("container") as view:
        (view / "etc" / "motd").unlink()
        (view / "etc" / "keep").write_text("changed\n")
        (view / "etc" / "new").write_text("n\n")
    assert [str(c) for c in vfs.changes("container")] == ["C /etc", "C /etc/keep", "D /etc/motd", "A /etc/new"]


def test_hook_graph_apply_diff(vfs: GraphDriver, base: str) -> None:
    size = vfs.create_from_tar("l2", base, io.BytesIO(layer_tar({"etc/.wh.motd": b"", "data/file": b"12345"})))
    assert size == vfs.diff_size("l2")
    with vfs.mounted("l2") as view:
        assert not (view / "etc" / "motd").exists()
        assert (view / "data" / "file").read_bytes() == b"12345"


def test_hook_graph_diff_size(vfs: GraphDriver, base: str) -> None:
    vfs.create_rw("container", base)
    with vfs.mounted("container") as view:
        (view / "blob").write_bytes(b"x" * 1000)
    assert vfs.diff_size("container") == 1000


def test_hook_graph_mounts(vfs: GraphDriver, base: str) -> None:
    vfs.create_rw("container", base)
    plan = vfs.mounts("container")
    assert plan.mounts == (Mount("bind", str(vfs.loaded.hook.graph_get(layer_id="container")), ("rbind", "rw")),)
    assert plan.holds_reference and vfs.refcount("container") == 1
