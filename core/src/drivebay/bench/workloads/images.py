"""Workloads on the layer store: ``image load`` (reference ``tar -xf``) and ``container commit``
(reference: ``tar -cf`` of the changed files)."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

from drivebay.bench.datagen import rewrite_files
from drivebay.bench.measure import run_quiet
from drivebay.bench.workloads import BenchEnv, Workload
from drivebay.bench.workloads.containers import changed_list
from drivebay.layers import open_stores
from drivebay.layers.progress import LoadProgress
from drivebay.layers.store import sha256_digest
from drivebay.layers.transfer import load_archive


def write_one_layer_image(layer_tar: Path, archive: Path, tag: str) -> None:
    """A ``docker save`` archive holding ``layer_tar`` as its only layer."""
    digest = sha256_digest(layer_tar.read_bytes())
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [digest]}}
    ).encode()
    config_name = sha256_digest(config).removeprefix("sha256:") + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": ["layer/layer.tar"]}]).encode()
    with tarfile.open(archive, "w") as tar:
        for name, data in ((config_name, config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        tar.add(layer_tar, "layer/layer.tar")


TAG = "bench/small:1"
COMMITTED = "bench/committed:1"


def small_image(env: BenchEnv) -> Path:
    """The ``docker save`` archive of the 50,000-file layer, written once per run."""
    return env.data.run.cached("small-image.tar", lambda path: write_one_layer_image(env.data.small_tar, path, TAG))


def _remove_store(env: BenchEnv, store_root: Path) -> None:
    stores = open_stores(store_root, env.driver.state, env.driver)
    for container in stores.containers.containers():
        stores.containers.remove(container.name)
    for image in stores.images.images():
        stores.images.remove(image.id)
    run_quiet("rm", "-rf", str(store_root))


def loaded_store(env: BenchEnv) -> list[Path]:
    """The layer store in which image-load's last run loaded the image, handed on for commit to use."""

    def release(pool: list[Path]) -> None:
        for store_root in pool:
            _remove_store(env, store_root)

    return env.shared("loaded-store", list, release)


class ImageLoad(Workload):
    name = "image-load"
    description = "image load of a one-layer image of ~50,000 small files (verify, keep the tar, extract)"
    reference = "tar -xf"
    shares = ("loaded-store",)

    def setup(self, env: BenchEnv) -> None:
        self.archive = small_image(env)
        self.store_root = env.scratch_dir("store")
        self.dest = env.scratch_dir("tar-x")

    def run(self, env: BenchEnv) -> None:
        stores = open_stores(self.store_root, env.driver.state, env.driver)
        load_archive(self.archive, stores.images, LoadProgress())

    def run_reference(self, env: BenchEnv) -> None:
        run_quiet("tar", "--numeric-owner", "-xf", str(env.data.small_tar), "-C", str(self.dest))

    def teardown(self, env: BenchEnv) -> None:
        super().teardown(env)
        run_quiet("rm", "-rf", str(self.dest))
        # Only the last run's store is handed on: the layer table is shared, so a store kept
        # earlier would make the next load find its layer already there.
        stores = open_stores(self.store_root, env.driver.state, env.driver)
        if self.last_run and any(TAG in image.tags for image in stores.images.images()):
            loaded_store(env).append(self.store_root)
        else:
            _remove_store(env, self.store_root)


def _commit_store(env: BenchEnv) -> Path:
    """A layer store holding the loaded image (image-load's, when it ran) and a container with 1,000 files rewritten."""
    pool = loaded_store(env)
    if pool:
        store_root = pool.pop()
        stores = open_stores(store_root, env.driver.state, env.driver)
    else:
        store_root = env.scratch_dir("store")
        stores = open_stores(store_root, env.driver.state, env.driver)
        load_archive(small_image(env), stores.images, LoadProgress())
    stores.containers.create("bench-commit", TAG)
    view = stores.containers.mount("bench-commit")
    try:
        rewrite_files([view / p for p in env.data.run.changed_files], env.data.seed)
    finally:
        stores.containers.unmount("bench-commit")
    return store_root


class CommitAfterChanges(Workload):
    name = "commit-after-changes"
    description = "container commit after changing 1,000 files on a 50,000-file image"
    reference = "tar --sort=name -cf of the changed files"
    shares = ("loaded-store", "commit-store")

    def setup(self, env: BenchEnv) -> None:
        # Commit only reads the container; each run's new image is removed in teardown, so every run stores anew.
        self.store_root = env.shared("commit-store", lambda: _commit_store(env), lambda root: _remove_store(env, root))
        self.out = env.scratch_dir("commit")
        self.list_file = changed_list(env)
        self.source = env.data.small_tree

    def run(self, env: BenchEnv) -> None:
        stores = open_stores(self.store_root, env.driver.state, env.driver)
        stores.containers.commit("bench-commit", COMMITTED)

    def run_reference(self, env: BenchEnv) -> None:
        run_quiet(
            "tar", "--sort=name", "-C", str(self.source), "-cf", str(self.out / "ref.tar"), "-T", str(self.list_file)
        )

    def teardown(self, env: BenchEnv) -> None:
        stores = open_stores(self.store_root, env.driver.state, env.driver)
        if any(COMMITTED in image.tags for image in stores.images.images()):
            stores.images.remove(COMMITTED)
        super().teardown(env)
        shutil.rmtree(self.out)
