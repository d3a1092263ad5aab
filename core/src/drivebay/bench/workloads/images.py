"""Workloads on the layer store: ``image load`` (reference ``tar -xf``) and ``container commit``
(reference: ``tar -cf`` of the changed files)."""

from __future__ import annotations

import io
import json
import random
import shutil
import tarfile
from pathlib import Path

from drivebay.bench.datagen import rewrite_files
from drivebay.bench.measure import run_quiet
from drivebay.bench.workloads import BenchEnv, Workload
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


class ImageLoad(Workload):
    name = "image-load"
    description = "image load of a one-layer image of ~50,000 small files (verify, keep the tar, extract)"
    reference = "tar -xf"

    def setup(self, env: BenchEnv) -> None:
        self.archive = env.scratch_dir("image") / "image.tar"
        write_one_layer_image(env.data.small_tar, self.archive, "bench/image-load:1")
        self.store_root = env.scratch_dir("store")
        self.dest = env.scratch_dir("tar-x")

    def run(self, env: BenchEnv) -> None:
        stores = open_stores(self.store_root, env.driver.state, env.driver)
        load_archive(self.archive, stores.images, LoadProgress())

    def run_reference(self, env: BenchEnv) -> None:
        run_quiet("tar", "--numeric-owner", "-xf", str(env.data.small_tar), "-C", str(self.dest))

    def teardown(self, env: BenchEnv) -> None:
        stores = open_stores(self.store_root, env.driver.state, env.driver)
        for image in stores.images.images():
            stores.images.remove(image.id)
        super().teardown(env)
        for path in (self.archive.parent, self.store_root, self.dest):
            shutil.rmtree(path)


class CommitAfterChanges(Workload):
    name = "commit-after-changes"
    description = "container commit after changing 1,000 files on a 50,000-file image"
    reference = "tar --sort=name -cf of the changed files"

    def setup(self, env: BenchEnv) -> None:
        self.archive = env.scratch_dir("image") / "image.tar"
        write_one_layer_image(env.data.small_tar, self.archive, "bench/commit-base:1")
        self.store_root = env.scratch_dir("store")
        stores = open_stores(self.store_root, env.driver.state, env.driver)
        load_archive(self.archive, stores.images, LoadProgress())
        stores.containers.create("bench-commit", "bench/commit-base:1")
        tree = env.data.small_tree[0]
        files = sorted(p.relative_to(tree) for p in tree.rglob("*.py"))
        chosen = random.Random(env.data.seed).sample(files, min(env.data.scale.changed_files, len(files)))
        view = stores.containers.mount("bench-commit")
        try:
            rewrite_files([view / p for p in chosen], env.data.seed)
        finally:
            stores.containers.unmount("bench-commit")
        self.out = env.scratch_dir("commit")
        self.list_file = self.out / "list"
        self.list_file.write_text("".join(f"./{p}\n" for p in sorted(chosen)))
        self.source = tree

    def run(self, env: BenchEnv) -> None:
        stores = open_stores(self.store_root, env.driver.state, env.driver)
        stores.containers.commit("bench-commit", "bench/committed:1")

    def run_reference(self, env: BenchEnv) -> None:
        run_quiet(
            "tar", "--sort=name", "-C", str(self.source), "-cf", str(self.out / "ref.tar"), "-T", str(self.list_file)
        )

    def teardown(self, env: BenchEnv) -> None:
        stores = open_stores(self.store_root, env.driver.state, env.driver)
        stores.containers.remove("bench-commit")
        for image in stores.images.images():
            stores.images.remove(image.id)
        super().teardown(env)
        for path in (self.archive.parent, self.store_root, self.out):
            shutil.rmtree(path)
