"""Containers on the real Docker fixture: the merged view matches ``docker export``, diff, commit, export, rm."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest
from layer_fixtures import (
    BASIC_DIFF_IDS,
    BASIC_TAG,
    EMPTY_STORE,
    INIT_ARTIFACTS,
    fixture,
    needs_root,
    opened_stores,
    root_for_driver,
    sha256,
    store_snapshot,
    stored_tar,
    supported_graph_drivers,
)

from drivebay.errors import ContainerExists, ImageInUse, LayerInUse
from drivebay.layers import Stores
from drivebay.layers.progress import LoadProgress
from drivebay.layers.transfer import load_archive, save_images
from drivebay.testing.treecompare import assert_same_tree

pytestmark = needs_root


def _extract(tar_path: Path, dest: Path) -> Path:
    dest.mkdir()
    subprocess.run(["tar", "-xpf", str(tar_path), "-C", str(dest), "--numeric-owner"], check=True)
    return dest


def _loaded(stores: Stores) -> None:
    load_archive(fixture("basic-docker.tar"), stores.images, LoadProgress())


@pytest.mark.parametrize("driver", supported_graph_drivers())
def test_container_view_matches_docker_export(tmp_path: Path, driver: str) -> None:
    expected = _extract(fixture("basic-rootfs.tar"), tmp_path / "expected")
    with root_for_driver(tmp_path, driver) as root, opened_stores(root, driver) as stores:
        _loaded(stores)
        stores.containers.create("c1", BASIC_TAG)
        view = stores.containers.mount("c1")
        # Whiteouts, the opaque /data/dir, the hardlink broken by copy-up, setuid and ownership all
        # come out as Docker's export has them; the init files too (their mtimes are creation times).
        assert_same_tree(
            expected,
            view,
            f"container c1 of basic-docker.tar on {driver} against basic-rootfs.tar",
            ignore=("/",),
            dir_mtimes=False,
            fields=("type", "size", "content", "mode", "uid", "gid", "target", "rdev", "hardlinks"),
        )
        assert_same_tree(
            expected, view, "file mtimes", ignore=("/", *INIT_ARTIFACTS), dir_mtimes=False, fields=("mtime",)
        )
        assert (view / "data" / "hard").read_bytes() == b"hello\n"
        assert (view / "data" / "a.txt").read_bytes() == b"changed\n"
        assert stores.containers.changes("c1") == []
        stores.containers.unmount("c1")


@pytest.mark.parametrize("driver", supported_graph_drivers())
def test_diff_commit_export_and_rm(tmp_path: Path, driver: str) -> None:
    with root_for_driver(tmp_path, driver) as root, opened_stores(root, driver) as stores:
        _loaded(stores)
        stores.containers.create("c1", BASIC_TAG)
        with pytest.raises(ContainerExists, match="c1"):
            stores.containers.create("c1", BASIC_TAG)
        view = stores.containers.mount("c1")
        assert stores.containers.mount("c1") == view
        (view / "data" / "new.txt").write_bytes(b"new file\n")
        (view / "data" / "a.txt").write_bytes(b"edited\n")
        (view / "data" / "owned").unlink()
        assert [str(c) for c in stores.containers.changes("c1")] == [
            "C /data",
            "C /data/a.txt",
            "A /data/new.txt",
            "D /data/owned",
        ]
        stores.containers.unmount("c1")
        assert stores.containers.mount_count(stores.containers.get("c1")) == 1
        stores.containers.unmount("c1")

        committed = stores.containers.commit("c1", "example/committed:1")
        assert committed.tags == ("example/committed:1",)
        assert committed.diff_ids[:3] == BASIC_DIFF_IDS
        top = stores.images.layer_chain(committed)[-1]
        layer_bytes = stored_tar(stores, top.chain_id)
        assert sha256(layer_bytes) == committed.diff_ids[3]
        with tarfile.open(fileobj=io.BytesIO(layer_bytes)) as tar:
            assert sorted(tar.getnames()) == ["data", "data/.wh.owned", "data/a.txt", "data/new.txt"]
        assert stores.images.history(committed)[0].created_by == "drivebay container commit c1"

        stores.containers.create("c2", "example/committed:1")
        with stores.layers.graph.mounted(stores.containers.get("c2").rw_layer) as view2:
            assert (view2 / "data" / "a.txt").read_bytes() == b"edited\n"
            assert (view2 / "data" / "new.txt").read_bytes() == b"new file\n"
            assert not (view2 / "data" / "owned").exists()
            assert (view2 / "etc" / "hostname").exists()

        exported = tmp_path / "c1.tar"
        with open(exported, "wb") as out:
            stores.containers.export("c1", out)
        with tarfile.open(exported) as tar:
            names = set(tar.getnames())
        assert {"data/new.txt", "etc/hostname", ".dockerenv", "bin/busybox"} <= names
        assert "data/owned" not in names

        with pytest.raises(ImageInUse, match="c1"):
            stores.images.remove(BASIC_TAG)
        stores.containers.mount("c1")
        with pytest.raises(LayerInUse, match="c1"):
            stores.containers.remove("c1")
        stores.containers.unmount("c1")
        stores.containers.remove("c1")
        saved = tmp_path / "committed.tar"
        save_images(["example/committed:1"], saved, "docker", stores.images)
        stores.containers.remove("c2")
        stores.images.remove("example/committed:1")
        stores.images.remove(BASIC_TAG)
        assert store_snapshot(root, stores) == EMPTY_STORE
    with opened_stores(tmp_path / "fresh") as stores:
        loaded = load_archive(saved, stores.images, LoadProgress())
        assert loaded[0].image.id == committed.id
        assert loaded[0].image.diff_ids == committed.diff_ids
