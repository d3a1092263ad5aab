"""The Docker 20.10 fixture image: its layers apply to the exported root filesystem, and diffs match `docker diff`."""

from __future__ import annotations

import gzip
import io
import json
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from drivebay.archive import (
    WhiteoutFormat,
    apply_layer_tar,
    naive_changes,
    open_layer_stream,
    write_changes_tar,
)
from drivebay.archive.tarformat import TarReader
from drivebay.testing.treecompare import assert_same_tree

INIT_ARTIFACTS = (
    "/.dockerenv",
    "/dev",
    "/dev/*",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/mtab",
    "/etc/resolv.conf",
    "/proc",
    "/sys",
)


def docker_layers(fixtures_dir: Path) -> list[bytes]:
    """The three layer tars of basic-docker.tar, bottom first."""
    with tarfile.open(fixtures_dir / "basic-docker.tar") as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        return [outer.extractfile(name).read() for name in manifest[0]["Layers"]]  # type: ignore[union-attr]


def docker_diff(fixtures_dir: Path, container: str) -> list[str]:
    """The `docker diff` lines the fixture README recorded for ``container``, sorted."""
    text = (fixtures_dir / "basic-diffs.txt").read_text()
    block = text.split(f"--- docker diff {container}:\n", 1)[1].split("\n\n", 1)[0]
    return sorted(line for line in block.splitlines() if re.match(r"[ACD] /", line))


@pytest.fixture
def layer_trees(tmp_path: Path, fixtures_dir: Path) -> list[Path]:
    """The fixture's three layers applied in order with DELETE; one tree per layer."""
    trees: list[Path] = []
    for index, layer in enumerate(docker_layers(fixtures_dir)):
        tree = tmp_path / f"layer{index}"
        if trees:
            # cp -a keeps owners, which shutil.copytree does not.
            subprocess.run(["cp", "-a", str(trees[-1]), str(tree)], check=True)
        else:
            tree.mkdir()
        apply_layer_tar(io.BytesIO(layer), tree, WhiteoutFormat.DELETE)
        trees.append(tree)
    return trees


def test_gnu_layer_with_dot_slash_names_is_read(fixtures_dir: Path) -> None:
    reader = TarReader(io.BytesIO(docker_layers(fixtures_dir)[0]))
    names = []
    while (hdr := reader.next()) is not None:
        names.append(hdr.name)
        assert hdr.mode <= 0o7777
    assert len(names) == 287 and names[0] == "./"


def test_layers_applied_in_order_give_the_exported_rootfs(
    tmp_path: Path, fixtures_dir: Path, layer_trees: list[Path]
) -> None:
    exported = tmp_path / "exported"
    exported.mkdir()
    with open(fixtures_dir / "basic-rootfs.tar", "rb") as f:
        apply_layer_tar(f, exported, WhiteoutFormat.DELETE)
    assert_same_tree(
        exported,
        layer_trees[-1],
        "basic:1 layers applied in order vs docker export",
        ignore=("/", *INIT_ARTIFACTS),
        dir_mtimes=False,
        labels=("docker export", "applied layers"),
    )
    assert (layer_trees[-1] / "data" / "a.txt").read_text() == "changed\n"
    assert (layer_trees[-1] / "data" / "hard").read_text() == "hello\n"
    assert (layer_trees[-1] / "data" / "suid").stat().st_mode & 0o7777 == 0o4755


def test_naive_changes_reproduce_docker_diff(fixtures_dir: Path, layer_trees: list[Path]) -> None:
    l2 = [str(c) for c in naive_changes(layer_trees[1], layer_trees[0])]
    l3 = [str(c) for c in naive_changes(layer_trees[2], layer_trees[1])]
    assert sorted(l2) == docker_diff(fixtures_dir, "basic-l2")
    assert sorted(l3) == docker_diff(fixtures_dir, "basic-l3")


def test_changes_tar_has_the_members_of_dockers_layer(fixtures_dir: Path, layer_trees: list[Path]) -> None:
    out = io.BytesIO()
    write_changes_tar(out, layer_trees[1], naive_changes(layer_trees[1], layer_trees[0]))
    ours = TarReader(io.BytesIO(out.getvalue()))
    theirs = TarReader(io.BytesIO(docker_layers(fixtures_dir)[1]))
    ours_names, theirs_names = set(), set()
    # Docker's whiteouts carry a stray linkname on a regular file; only links' targets count.
    while (hdr := ours.next()) is not None:
        ours_names.add((hdr.name, hdr.type, hdr.linkname if hdr.type in (b"1", b"2") else ""))
    while (hdr := theirs.next()) is not None:
        theirs_names.add((hdr.name, hdr.type, hdr.linkname if hdr.type in (b"1", b"2") else ""))
    assert ours_names == theirs_names


def test_oci_gzip_layers_decompress_to_the_docker_layers(fixtures_dir: Path) -> None:
    docker = {layer for layer in docker_layers(fixtures_dir)}
    with tarfile.open(fixtures_dir / "basic-oci.tar") as outer:
        blobs = [m for m in outer.getmembers() if m.name.startswith("blobs/") and m.isfile()]
        gzipped = [outer.extractfile(m).read() for m in blobs]  # type: ignore[union-attr]
    layers = []
    for blob in gzipped:
        if blob.startswith(b"\x1f\x8b"):
            with open_layer_stream(io.BytesIO(blob)) as stream:
                layers.append(stream.read())
            assert layers[-1] == gzip.decompress(blob)
    assert set(layers) == docker
