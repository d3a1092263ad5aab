"""Crash safety and concurrency of the layer store, through the real CLI, on every supported graph driver.

A ``drivebay`` process is killed with SIGKILL at each named point of ``image
load`` and ``container commit`` (``DRIVEBAY_TEST_CRASH_AT``, see
:mod:`drivebay.layers.crashpoints`); the next start must show a consistent
store with no leftover driver directories, and the same command must then work.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from layer_fixtures import (
    BASE_LAYER,
    EMPTY_STORE,
    WHITEOUT_LAYER,
    Entry,
    ImageSpec,
    layer_tar,
    needs_root,
    opened_stores,
    root_for_driver,
    run_cli,
    sha256,
    store_snapshot,
    supported_graph_drivers,
    write_docker_archive,
)

from drivebay.layers import Stores
from drivebay.layers.crashpoints import ENV
from drivebay.layers.progress import LoadProgress
from drivebay.layers.transfer import load_archive

pytestmark = needs_root

LOAD_POINTS = [
    "layer:claimed",
    "layer:applying",
    "layer:mid-apply",
    "layer:applied",
    "layer:ready",
    "load:before-register",
]
COMMIT_POINTS = [
    "commit:diffed",
    "layer:claimed",
    "layer:mid-apply",
    "layer:applied",
    "layer:ready",
    "commit:before-register",
]
ID_LIKE = re.compile(r"[0-9a-f]{64}(-init)?")


def _big_layer(count: int, salt: str) -> bytes:
    """A layer with many files, so that a kill lands in the middle of applying it."""
    entries = [Entry("big/", "dir", mode=0o755)]
    entries += [Entry(f"big/{salt}-{n:05d}", data=(f"{salt} {n}\n" * 800).encode()) for n in range(count)]
    return layer_tar(entries)


def _driver_ids(home: Path) -> set[str]:
    """Names under the driver's home that look like layer IDs (cache IDs and container IDs)."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(home):
        depth = len(Path(dirpath).relative_to(home).parts)
        for name in [*dirnames, *filenames]:
            if ID_LIKE.fullmatch(name):
                found.add(name)
        if depth >= 2:
            dirnames.clear()
    return found


def _expected_driver_ids(stores: Stores) -> set[str]:
    ids = {layer.cache_id for layer in stores.layers.layers()}
    for container in stores.containers.containers():
        ids |= {container.init_layer, container.rw_layer}
    return ids


@pytest.fixture
def driver_root(tmp_path: Path, driver: str) -> Iterator[Path]:
    """A root for ``driver``: on a scratch filesystem of the type it requires; skips when the host cannot."""
    with root_for_driver(tmp_path, driver) as root:
        with opened_stores(root, driver):
            pass
        yield root


@pytest.mark.parametrize("driver", supported_graph_drivers())
@pytest.mark.parametrize("point", LOAD_POINTS)
def test_load_killed_at_any_point_leaves_a_consistent_store(
    tmp_path: Path, driver_root: Path, driver: str, point: str
) -> None:
    root = driver_root
    spec = ImageSpec(["example/crash:1"], [_big_layer(400, "base"), layer_tar(WHITEOUT_LAYER)])
    archive = write_docker_archive(tmp_path / "image.tar", [spec])
    killed = run_cli(root, driver, "image", "load", "-q", "-i", archive, env={ENV: point}, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with opened_stores(root, driver) as stores:
        assert store_snapshot(root, stores) == EMPTY_STORE, f"after a kill at {point}"
        assert _driver_ids(root / driver) == set(), f"driver directories left after a kill at {point}"
    loaded = run_cli(root, driver, "image", "load", "-q", "-i", archive)
    assert loaded.stdout == "Loaded image: example/crash:1\n"
    with opened_stores(root, driver) as stores:
        assert [layer.diff_id for layer in stores.layers.layers()] == [sha256(layer) for layer in spec.layers]
        assert _driver_ids(root / driver) == _expected_driver_ids(stores)


@pytest.mark.parametrize("driver", supported_graph_drivers())
@pytest.mark.parametrize("point", COMMIT_POINTS)
def test_commit_killed_at_any_point_leaves_a_consistent_store(
    tmp_path: Path, driver_root: Path, driver: str, point: str
) -> None:
    root = driver_root
    archive = write_docker_archive(tmp_path / "image.tar", [ImageSpec(["example/base:1"], [layer_tar(BASE_LAYER)])])
    with opened_stores(root, driver) as stores:
        load_archive(archive, stores.images, LoadProgress())
        stores.containers.create("c1", "example/base:1")
        view = stores.containers.mount("c1")
        for n in range(300):
            (view / "etc" / f"added-{n}").write_bytes(b"added\n" * 1700)
        (view / "etc" / "passwd").unlink()
        stores.containers.unmount("c1")
        before = store_snapshot(root, stores)

    killed = run_cli(root, driver, "container", "commit", "c1", "example/new:1", env={ENV: point}, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with opened_stores(root, driver) as stores:
        assert store_snapshot(root, stores) == before, f"after a kill at {point}"
        assert _driver_ids(root / driver) == _expected_driver_ids(stores)
    image_id = run_cli(root, driver, "container", "commit", "c1", "example/new:1").stdout.strip()
    with opened_stores(root, driver) as stores:
        image = stores.images.resolve("example/new:1")
        assert image.id == image_id and len(image.diff_ids) == 2
        assert _driver_ids(root / driver) == _expected_driver_ids(stores)


def _popen_load(root: Path, driver: str, archive: Path) -> subprocess.Popen[str]:
    command = [
        sys.executable,
        "-m",
        "drivebay.cli.main",
        "--root",
        str(root),
        "-s",
        driver,
        "image",
        "load",
        "-q",
        "-i",
        str(archive),
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("driver", supported_graph_drivers())
def test_concurrent_loads_sharing_layers_both_succeed_and_store_them_once(
    tmp_path: Path, driver_root: Path, driver: str
) -> None:
    root = driver_root
    shared = [_big_layer(600, "shared"), layer_tar(BASE_LAYER)]
    specs = [
        ImageSpec(["example/one:1"], [*shared, _big_layer(50, "one")]),
        ImageSpec(["example/two:1"], [*shared, _big_layer(50, "two")]),
    ]
    archives = [write_docker_archive(tmp_path / f"{n}.tar", [spec]) for n, spec in enumerate(specs)]
    processes = [_popen_load(root, driver, archive) for archive in [*archives, archives[0]]]
    results = [(p.wait(timeout=300), *p.communicate()) for p in processes]
    assert [rc for rc, _, _ in results] == [0, 0, 0], [err for _, _, err in results]
    with opened_stores(root, driver) as stores:
        assert sorted(tag for image in stores.images.images() for tag in image.tags) == [
            "example/one:1",
            "example/two:1",
        ]
        layers = stores.layers.layers()
        assert len(layers) == 4
        assert sorted(layer.diff_id for layer in layers) == sorted(
            {sha256(layer) for spec in specs for layer in spec.layers}
        )
        assert len(stores.layers.graph.layers()) == 4
        assert _driver_ids(root / driver) == _expected_driver_ids(stores)
        assert not list((root / "layerdb" / "tmp").iterdir())
