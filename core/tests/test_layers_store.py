"""The layer store: identities, sharing, refcounts down the chain, image tags and removal."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from layer_fixtures import (
    BASE_LAYER,
    EMPTY_STORE,
    WHITEOUT_LAYER,
    Entry,
    layer_tar,
    needs_root,
    opened_stores,
    sha256,
    store_snapshot,
    stored_tar,
)

from drivebay.errors import DigestMismatch, ImageNotFound, UsageError
from drivebay.layers import Stores
from drivebay.layers.images import normalize_ref
from drivebay.layers.initlayer import INIT_PATHS, populate_init_layer
from drivebay.layers.store import TempTar, chain_id, chain_ids, digest_hex
from drivebay.layers.transfer import import_rootfs


def test_chain_ids_follow_docker_and_oci() -> None:
    a, b, c = (sha256(name.encode()) for name in "abc")
    assert chain_id(None, a) == a
    ab = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    assert chain_id(a, b) == ab
    assert chain_ids([a, b, c]) == [a, ab, "sha256:" + hashlib.sha256(f"{ab} {c}".encode()).hexdigest()]


def test_digests_that_are_not_sha256_are_refused() -> None:
    with pytest.raises(DigestMismatch, match="not a sha256 digest"):
        digest_hex("sha256:../../etc")
    with pytest.raises(DigestMismatch):
        digest_hex("md5:" + "0" * 32)


@pytest.mark.parametrize(
    ("ref", "normal"),
    [
        ("busybox", "busybox:latest"),
        ("example/app:1.0", "example/app:1.0"),
        ("localhost:5000/app", "localhost:5000/app:latest"),
        ("registry.example.com:443/team/app:v2", "registry.example.com:443/team/app:v2"),
    ],
)
def test_references_are_normalized_like_docker(ref: str, normal: str) -> None:
    assert normalize_ref(ref) == normal


@pytest.mark.parametrize("ref", ["UPPER:1", "app:", "bad name", "app:tag/x", "-app"])
def test_bad_references_are_refused(ref: str) -> None:
    with pytest.raises(UsageError, match="invalid image reference"):
        normalize_ref(ref)


@needs_root
def test_import_shares_identical_layers_and_rm_removes_them_with_the_last_image(tmp_path: Path) -> None:
    root = tmp_path / "root"
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(layer_tar(BASE_LAYER))
    with opened_stores(root) as stores:
        first = import_rootfs(rootfs, "example/one", stores.images)
        second = import_rootfs(rootfs, "example/two:2", stores.images)
        assert first.diff_ids == second.diff_ids == [sha256(rootfs.read_bytes())]
        assert len(stores.layers.layers()) == 1 and len(stores.layers.graph.layers()) == 1
        assert stored_tar(stores, first.diff_ids[0]) == rootfs.read_bytes()
        history = stores.images.history(first)
        assert [(h.comment, h.size) for h in history] == [("Imported from -", stores.images.size(first))]

        assert stores.images.remove("example/one") == ["Untagged: example/one:latest", f"Deleted: {first.id}"]
        assert len(stores.layers.layers()) == 1
        with pytest.raises(ImageNotFound, match="example/one:latest"):
            stores.images.resolve("example/one")
        lines = stores.images.remove(second.id[7:19])
        assert lines == ["Untagged: example/two:2", f"Deleted: {second.id}", f"Deleted: {first.diff_ids[0]}"]
        assert store_snapshot(root, stores) == EMPTY_STORE


@needs_root
def test_removing_an_image_removes_layers_down_the_chain_but_not_shared_ones(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with opened_stores(root) as stores:
        layers = stores.layers
        with layers.leasing() as lease:
            base = layers.add_tar(lease, _temp_tar(stores, tmp_path, BASE_LAYER), None)
            mid = layers.add_tar(lease, _temp_tar(stores, tmp_path, WHITEOUT_LAYER), base.chain_id)
            top = layers.add_tar(lease, _temp_tar(stores, tmp_path, [Entry("top", data=b"t")]), mid.chain_id)
            other = layers.add_tar(lease, _temp_tar(stores, tmp_path, [Entry("other", data=b"o")]), base.chain_id)
            tall = stores.images.register(_config([base.diff_id, mid.diff_id, top.diff_id]), ["example/tall:1"])
            side = stores.images.register(_config([base.diff_id, other.diff_id]), ["example/side:1"])
        assert len(layers.layers()) == 4
        stores.images.remove("example/tall:1")
        assert {layer.chain_id for layer in layers.layers()} == {base.chain_id, other.chain_id}
        assert tall.top_chain == top.chain_id and side.top_chain == other.chain_id
        stores.images.remove("example/side:1")
        assert store_snapshot(root, stores) == EMPTY_STORE


def _config(diff_ids: list[str]) -> bytes:
    history = [{"created": "2026-11-23T10:00:00Z", "created_by": f"step {n}"} for n in range(len(diff_ids))]
    return json.dumps({"os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": history}).encode()


def _temp_tar(stores: Stores, tmp_path: Path, entries: list[Entry]) -> TempTar:
    path = tmp_path / f"layer-{len(list(tmp_path.iterdir()))}.tar"
    path.write_bytes(layer_tar(entries))
    with open(path, "rb") as raw:
        return stores.layers.write_temp_tar(raw)


@needs_root
def test_a_tag_moves_to_the_newest_image_and_the_old_one_stays_untagged(tmp_path: Path) -> None:
    with opened_stores(tmp_path / "root") as stores:
        rootfs = tmp_path / "a.tar"
        rootfs.write_bytes(layer_tar(BASE_LAYER))
        old = import_rootfs(rootfs, "example/app:1", stores.images)
        rootfs.write_bytes(layer_tar([Entry("only", data=b"x")]))
        new = import_rootfs(rootfs, "example/app:1", stores.images)
        assert stores.images.resolve("example/app:1").id == new.id
        assert stores.images.resolve(old.id).tags == ()


def test_init_layer_has_dockers_paths_and_keeps_what_the_image_has(tmp_path: Path) -> None:
    root = tmp_path / "layer"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hosts").write_bytes(b"from the image\n")
    (root / "sys").symlink_to("/tmp")
    populate_init_layer(root)
    assert (root / "etc" / "hosts").read_bytes() == b"from the image\n"
    assert (root / "sys").is_symlink()
    assert (root / "etc" / "mtab").readlink() == Path("/proc/mounts")
    for path, kind in INIT_PATHS.items():
        full = root / path.lstrip("/")
        assert full.is_symlink() or full.exists(), path
        if kind == "file" and path != "/etc/hosts":
            assert full.stat().st_mode & 0o7777 == 0o755 and full.stat().st_size == 0
    assert (root / "dev" / "pts").is_dir() and (root / "dev" / "shm").is_dir()


def test_init_layer_never_follows_a_symlinked_parent_out_of_the_layer(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "layer"
    root.mkdir()
    (root / "etc").symlink_to(outside)
    (root / "dev").symlink_to("../outside")
    populate_init_layer(root)
    assert list(outside.iterdir()) == []
