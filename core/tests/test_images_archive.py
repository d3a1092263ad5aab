"""Image load and save: docker-save and OCI archives, real Docker fixtures and generated ones."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
from layer_fixtures import (
    BASE_LAYER,
    BASIC_DIFF_IDS,
    BASIC_IMAGE_ID,
    BASIC_TAG,
    EMPTY_STORE,
    WHITEOUT_LAYER,
    Entry,
    ImageSpec,
    archive_members,
    fixture,
    layer_tar,
    needs_root,
    opened_stores,
    rewrite_archive,
    sha256,
    store_snapshot,
    stored_tar,
    write_docker_archive,
    write_oci_archive,
)

from drivebay.errors import DigestMismatch, InvalidArchive, UnsafeArchive
from drivebay.layers.progress import LoadProgress
from drivebay.layers.store import chain_ids
from drivebay.layers.transfer import load_archive, save_images

pytestmark = needs_root


def _fixture_layer_tars(path: Path) -> list[bytes]:
    members = archive_members(path)
    manifest = json.loads(members["manifest.json"])
    return [members[name] for name in manifest[0]["Layers"]]


def test_docker_fixture_loads_with_the_readme_diff_ids(tmp_path: Path) -> None:
    with opened_stores(tmp_path / "root") as stores:
        loaded = load_archive(fixture("basic-docker.tar"), stores.images, LoadProgress())
        assert [item.tags for item in loaded] == [(BASIC_TAG,)]
        image = stores.images.resolve(BASIC_TAG)
        assert image.id == BASIC_IMAGE_ID
        assert image.diff_ids == BASIC_DIFF_IDS
        assert [layer.diff_id for layer in stores.images.layer_chain(image)] == BASIC_DIFF_IDS
        assert [layer.chain_id for layer in stores.images.layer_chain(image)] == chain_ids(BASIC_DIFF_IDS)
        history = stores.images.history(image)
        assert [entry.comment for entry in history][-1] == "Imported from -"
        assert history[0].image_id == BASIC_IMAGE_ID and history[0].created_by.startswith("sh -c")
        assert all(entry.size > 0 for entry in history)


def test_oci_fixture_loads_with_the_same_diff_ids(tmp_path: Path) -> None:
    with opened_stores(tmp_path / "root") as stores:
        loaded = load_archive(fixture("basic-oci.tar"), stores.images, LoadProgress())
        assert [item.tags for item in loaded] == [(BASIC_TAG,)]
        assert stores.images.resolve(BASIC_TAG).diff_ids == BASIC_DIFF_IDS
        layer_tars = [stored_tar(stores, chain) for chain in chain_ids(BASIC_DIFF_IDS)]
        assert layer_tars == _fixture_layer_tars(fixture("basic-docker.tar"))


@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_save_gives_the_loaded_layer_tars_back_byte_for_byte(tmp_path: Path, fmt: str) -> None:
    original = _fixture_layer_tars(fixture("basic-docker.tar"))
    saved = tmp_path / f"saved-{fmt}.tar"
    with opened_stores(tmp_path / "root") as stores:
        load_archive(fixture("basic-docker.tar"), stores.images, LoadProgress())
        save_images([BASIC_TAG], saved, fmt, stores.images)
    members = archive_members(saved)
    manifest = json.loads(members["manifest.json"])
    assert manifest[0]["RepoTags"] == [BASIC_TAG]
    assert [members[name] for name in manifest[0]["Layers"]] == original
    assert sha256(members[manifest[0]["Config"]]) == BASIC_IMAGE_ID
    if fmt == "oci":
        index = json.loads(members["index.json"])
        assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == BASIC_TAG
        oci_manifest = json.loads(members["blobs/sha256/" + index["manifests"][0]["digest"].removeprefix("sha256:")])
        assert [layer["digest"] for layer in oci_manifest["layers"]] == BASIC_DIFF_IDS
    with opened_stores(tmp_path / "fresh") as stores:
        loaded = load_archive(saved, stores.images, LoadProgress())
        assert loaded[0].image.id == BASIC_IMAGE_ID
        assert loaded[0].image.diff_ids == BASIC_DIFF_IDS


def test_loading_again_writes_nothing(tmp_path: Path) -> None:
    with opened_stores(tmp_path / "root") as stores:
        load_archive(fixture("basic-docker.tar"), stores.images, LoadProgress())
        before = {layer.chain_id: (layer.cache_id, layer.created) for layer in stores.layers.layers()}
        tar_mtimes = {c: stores.layers.kept_path(c).stat().st_mtime_ns for c in before}
        load_archive(fixture("basic-oci.tar"), stores.images, LoadProgress())
        load_archive(fixture("basic-docker.tar"), stores.images, LoadProgress())
        after = {layer.chain_id: (layer.cache_id, layer.created) for layer in stores.layers.layers()}
        assert after == before
        assert {c: stores.layers.kept_path(c).stat().st_mtime_ns for c in after} == tar_mtimes
        assert len(stores.layers.graph.layers()) == 3


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_generated_oci_archive_round_trips(tmp_path: Path, compression: str) -> None:
    spec = ImageSpec(["example/app:1"], [layer_tar(BASE_LAYER), layer_tar(WHITEOUT_LAYER)])
    archive = write_oci_archive(tmp_path / "app.tar", [spec], compression)
    with opened_stores(tmp_path / "root") as stores:
        loaded = load_archive(archive, stores.images, LoadProgress())
        image = loaded[0].image
        assert image.diff_ids == [sha256(layer) for layer in spec.layers]
        assert [stored_tar(stores, c) for c in image.chain_ids] == spec.layers
        with stores.layers.graph.mounted(stores.images.layer_chain(image)[-1].cache_id) as view:
            assert not (view / "etc" / "motd").exists()
            assert (view / "etc" / "passwd").read_bytes().startswith(b"root")
            assert sorted(p.name for p in (view / "opt" / "app").iterdir()) == ["new.txt"]
            assert not (view / "usr" / "share" / "doc").exists()
            assert (view / "opt" / "setuid").stat().st_mode & 0o7777 == 0o4755
            assert (view / "opt" / "hard").stat().st_ino == (view / "opt" / "setuid").stat().st_ino
            assert (view / "var" / "data").stat().st_uid == 1000


def test_archive_with_two_images_shares_their_base_layer(tmp_path: Path) -> None:
    base = layer_tar(BASE_LAYER)
    specs = [ImageSpec(["example/a:1"], [base]), ImageSpec(["example/b:1"], [base, layer_tar(WHITEOUT_LAYER)])]
    with opened_stores(tmp_path / "root") as stores:
        loaded = load_archive(write_docker_archive(tmp_path / "two.tar", specs), stores.images, LoadProgress())
        assert [item.tags for item in loaded] == [("example/a:1",), ("example/b:1",)]
        assert len(stores.layers.layers()) == 2
        stores.images.remove("example/b:1")
        assert [layer.diff_id for layer in stores.layers.layers()] == [sha256(base)]
        stores.images.remove("example/a:1")
        assert store_snapshot(tmp_path / "root", stores) == EMPTY_STORE


def _corrupt_layer_archive(path: Path) -> Path:
    """A docker-save archive whose second layer does not hash to the config's diff ID."""
    good = [layer_tar(BASE_LAYER), layer_tar(WHITEOUT_LAYER)]
    write_docker_archive(path, [ImageSpec(["example/bad:1"], good)])
    members = archive_members(path)
    manifest = json.loads(members["manifest.json"])
    members[manifest[0]["Layers"][1]] = layer_tar([*WHITEOUT_LAYER[:-1]])
    return rewrite_archive(path, members)


def test_diff_id_mismatch_names_the_layer_and_registers_nothing(tmp_path: Path) -> None:
    archive = _corrupt_layer_archive(tmp_path / "bad.tar")
    root = tmp_path / "root"
    with opened_stores(root) as stores:
        with pytest.raises(DigestMismatch, match=r"layer 2 .*layer\.tar.*diff ID"):
            load_archive(archive, stores.images, LoadProgress())
        assert store_snapshot(root, stores) == EMPTY_STORE


def test_oci_blob_digest_mismatch_is_refused(tmp_path: Path) -> None:
    spec = ImageSpec(["example/app:1"], [layer_tar(BASE_LAYER)])
    path = write_oci_archive(tmp_path / "oci.tar", [spec], "gzip")
    members = archive_members(path)
    blob_name = next(n for n, d in members.items() if d[:2] == b"\x1f\x8b")
    members[blob_name] = members[blob_name][:-8] + b"\0" * 8
    rewrite_archive(path, members)
    with opened_stores(tmp_path / "root") as stores:
        with pytest.raises((DigestMismatch, InvalidArchive)):
            load_archive(path, stores.images, LoadProgress())
        assert stores.images.images() == [] and stores.layers.layers() == []


def test_not_an_image_archive_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rootfs.tar"
    path.write_bytes(layer_tar(BASE_LAYER))
    with opened_stores(tmp_path / "root") as stores, pytest.raises(InvalidArchive, match="neither"):
        load_archive(path, stores.images, LoadProgress())


def test_a_gzip_compressed_docker_save_loads(tmp_path: Path) -> None:
    packed = tmp_path / "basic.tar.gz"
    packed.write_bytes(gzip.compress(fixture("basic-docker.tar").read_bytes(), compresslevel=1))
    with opened_stores(tmp_path / "root") as stores:
        loaded = load_archive(packed, stores.images, LoadProgress())
        assert loaded[0].image.diff_ids == BASIC_DIFF_IDS
        assert list((tmp_path / "root" / "layerdb" / "tmp").iterdir()) == []


def test_a_bad_tag_in_the_archive_is_refused_before_any_layer_is_stored(tmp_path: Path) -> None:
    archive = write_docker_archive(tmp_path / "bad-tag.tar", [ImageSpec(["Not A Tag"], [layer_tar(BASE_LAYER)])])
    with opened_stores(tmp_path / "root") as stores:
        with pytest.raises(InvalidArchive, match="invalid image reference 'Not A Tag'"):
            load_archive(archive, stores.images, LoadProgress())
        assert store_snapshot(tmp_path / "root", stores) == EMPTY_STORE


def test_a_hostile_layer_is_refused_and_the_layers_below_it_are_not_kept(tmp_path: Path) -> None:
    hostile = layer_tar([Entry("../escaped", data=b"x")])
    archive = write_docker_archive(
        tmp_path / "hostile.tar", [ImageSpec(["example/h:1"], [layer_tar(BASE_LAYER), hostile])]
    )
    with opened_stores(tmp_path / "root") as stores:
        with pytest.raises(UnsafeArchive):
            load_archive(archive, stores.images, LoadProgress())
        assert store_snapshot(tmp_path / "root", stores) == EMPTY_STORE
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "root" / "escaped").exists()


def _archive_ending_in_its_layer(path: Path, layer: bytes) -> tuple[Path, int]:
    """A docker-save archive whose last member is its one layer; and that layer's offset in the file."""
    write_docker_archive(path, [ImageSpec(["example/cut:1"], [layer])])
    members = archive_members(path)
    (layer_name,) = json.loads(members["manifest.json"])[0]["Layers"]
    rewrite_archive(path, {**{n: d for n, d in members.items() if n != layer_name}, layer_name: layer})
    return path, path.read_bytes().index(layer)


def test_an_archive_cut_inside_a_layer_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    layer = layer_tar([Entry(f"f{n}", data=bytes([n]) * 5000) for n in range(40)])
    path, offset = _archive_ending_in_its_layer(tmp_path / "cut.tar", layer)
    os.truncate(path, offset + len(layer) // 2)
    root = tmp_path / "root"
    with opened_stores(root) as stores:
        with pytest.raises(InvalidArchive, match="end of data"):
            load_archive(path, stores.images, LoadProgress())
        assert store_snapshot(root, stores) == EMPTY_STORE


class _CountingProgress(LoadProgress):
    def __init__(self) -> None:
        self.images: list[tuple[int, int]] = []
        self.bytes = 0
        self.layers = 0

    def start_image(self, label: str, total_bytes: int, layers: int) -> None:
        self.images.append((total_bytes, layers))

    def advance(self, nbytes: int) -> None:
        self.bytes += nbytes

    def layer_done(self) -> None:
        self.layers += 1


def test_progress_counts_every_byte_of_every_layer_loaded(tmp_path: Path) -> None:
    # A layer bigger than one copy chunk, so that progress comes in several steps.
    big = layer_tar([Entry(f"big/{n:03d}", data=bytes([n]) * 9000) for n in range(100)])
    layers = [big, layer_tar(BASE_LAYER)]
    archive = write_docker_archive(tmp_path / "two.tar", [ImageSpec(["example/p:1"], layers)])
    progress = _CountingProgress()
    with opened_stores(tmp_path / "root") as stores:
        load_archive(archive, stores.images, progress)
        assert [stored_tar(stores, c) for c in chain_ids(map(sha256, layers))] == layers
    total = sum(map(len, layers))
    assert progress.images == [(total, 2)]
    assert (progress.bytes, progress.layers) == (total, 2)


class _MislabelledSpec(ImageSpec):
    """An image whose config lists the diff IDs of ``claimed`` while its blobs hold ``layers``."""

    def __init__(self, tags: list[str], layers: list[bytes], claimed: list[bytes]) -> None:
        super().__init__(tags, layers)
        self.claimed = claimed

    def config(self) -> bytes:
        return ImageSpec(self.tags, self.claimed).config()


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_a_compressed_layer_that_is_not_its_diff_id_is_refused_and_leaves_nothing(
    tmp_path: Path, compression: str
) -> None:
    spec = _MislabelledSpec(["example/lie:1"], [layer_tar(BASE_LAYER)], claimed=[layer_tar(WHITEOUT_LAYER)])
    archive = write_oci_archive(tmp_path / "lie.tar", [spec], compression)
    root = tmp_path / "root"
    with opened_stores(root) as stores:
        with pytest.raises(DigestMismatch, match="lists diff ID"):
            load_archive(archive, stores.images, LoadProgress())
        assert store_snapshot(root, stores) == EMPTY_STORE


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_a_hostile_layer_stops_the_thread_keeping_its_tar(tmp_path: Path, compression: str) -> None:
    # Far more data after the hostile member than the keeping thread may get ahead of the apply by.
    padding = [Entry(f"pad/{n:02d}", data=bytes(1 << 20)) for n in range(24)]
    hostile = layer_tar([Entry("../escaped", data=b"x"), *padding])
    archive = write_oci_archive(tmp_path / "hostile.tar", [ImageSpec(["example/h:1"], [hostile])], compression)
    root = tmp_path / "root"
    with opened_stores(root) as stores:
        with pytest.raises(UnsafeArchive):
            load_archive(archive, stores.images, LoadProgress())
        assert store_snapshot(root, stores) == EMPTY_STORE


@pytest.mark.parametrize(
    ("compression", "error", "message"),
    [
        ("gzip", InvalidArchive, "gzip layer stream is corrupt or truncated"),
        # A zstd stream cut between frames' blocks reads as a short stream: its digest gives it away.
        ("zstd", DigestMismatch, "blob content hashes to"),
    ],
)
def test_a_compressed_layer_cut_short_is_refused_for_its_blob_not_its_tar(
    tmp_path: Path, compression: str, error: type[Exception], message: str
) -> None:
    layer = layer_tar([Entry(f"f{n:02d}", data=bytes([n]) * 300_000) for n in range(30)])
    path = write_oci_archive(tmp_path / "cut.tar", [ImageSpec(["example/cut:1"], [layer])], compression)
    members = archive_members(path)
    blob_name = next(
        n for n, d in members.items() if n.startswith("blobs/") and d[:4] in (b"\x1f\x8b\x08\x00", b"\x28\xb5\x2f\xfd")
    )
    members[blob_name] = members[blob_name][: len(members[blob_name]) // 2]
    rewrite_archive(path, members)
    root = tmp_path / "root"
    with opened_stores(root) as stores:
        with pytest.raises(error, match=message):
            load_archive(path, stores.images, LoadProgress())
        assert store_snapshot(root, stores) == EMPTY_STORE
