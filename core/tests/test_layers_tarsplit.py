"""A loaded layer keeps its tar-split, and ``image save`` rebuilds the loaded tar from it on every driver."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from layer_fixtures import (
    BASE_LAYER,
    WHITEOUT_LAYER,
    Entry,
    ImageSpec,
    archive_members,
    layer_tar,
    needs_root,
    opened_stores,
    root_for_driver,
    sha256,
    supported_graph_drivers,
    write_docker_archive,
)

from drivebay.errors import DigestMismatch
from drivebay.layers.progress import LoadProgress
from drivebay.layers.store import chain_ids
from drivebay.layers.transfer import load_archive, save_images

pytestmark = needs_root

TAG = "example/split:1"


def saved_layers(path: Path) -> list[bytes]:
    members = archive_members(path)
    return [members[name] for name in json.loads(members["manifest.json"])[0]["Layers"]]


@pytest.mark.parametrize("driver", supported_graph_drivers())
def test_loaded_layers_keep_tar_splits_and_save_back_byte_for_byte(tmp_path: Path, driver: str) -> None:
    big = layer_tar([*BASE_LAYER, Entry("opt/blob", data=bytes(range(256)) * 4096)])
    layers = [big, layer_tar(WHITEOUT_LAYER)]
    archive = write_docker_archive(tmp_path / "image.tar", [ImageSpec([TAG], layers)])
    with root_for_driver(tmp_path, driver) as root, opened_stores(root, driver) as stores:
        load_archive(archive, stores.images, LoadProgress())
        chains = chain_ids(map(sha256, layers))
        kept = [stores.layers.kept_path(chain) for chain in chains]
        assert [path.name for path in kept] == ["layer.tarsplit", "layer.tarsplit"]
        assert not any(stores.layers.tar_path(chain).exists() for chain in chains)
        assert kept[0].stat().st_size < len(big) // 10
        save_images([TAG], tmp_path / "saved.tar", "docker", stores.images)
        assert stores.layers.graph.refcount(stores.layers.get(chains[0]).cache_id) == 0
    assert saved_layers(tmp_path / "saved.tar") == layers


def test_a_tar_that_replaces_its_own_file_is_kept_whole(tmp_path: Path) -> None:
    layers = [layer_tar([Entry("etc/", "dir", mode=0o755), Entry("etc/motd", data=b"a"), Entry("etc/motd", data=b"b")])]
    archive = write_docker_archive(tmp_path / "image.tar", [ImageSpec([TAG], layers)])
    with opened_stores(tmp_path / "root") as stores:
        load_archive(archive, stores.images, LoadProgress())
        (chain,) = chain_ids(map(sha256, layers))
        assert stores.layers.kept_path(chain).name == "layer.tar"
        assert not stores.layers.split_path(chain).exists()
        assert not list(stores.layers.tmpdir.iterdir())
        save_images([TAG], tmp_path / "saved.tar", "oci", stores.images)
    members = archive_members(tmp_path / "saved.tar")
    assert members["blobs/sha256/" + sha256(layers[0]).removeprefix("sha256:")] == layers[0]


def test_a_layer_changed_since_it_was_loaded_fails_the_save_and_writes_nothing(tmp_path: Path) -> None:
    layers = [layer_tar(BASE_LAYER)]
    archive = write_docker_archive(tmp_path / "image.tar", [ImageSpec([TAG], layers)])
    out = tmp_path / "saved.tar"
    with opened_stores(tmp_path / "root") as stores:
        load_archive(archive, stores.images, LoadProgress())
        (chain,) = chain_ids(map(sha256, layers))
        layer = stores.layers.get(chain)
        with stores.layers.graph.mounted(layer.cache_id) as view:
            passwd = view / "etc" / "passwd"
            passwd.write_bytes(passwd.read_bytes().upper())  # same size: only the hash can tell
        with pytest.raises(DigestMismatch, match=f"layer {chain}: the tar rebuilt from the layer's files hashes to"):
            save_images([TAG], out, "docker", stores.images)
        assert stores.layers.graph.refcount(layer.cache_id) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["image.tar", "root"]
