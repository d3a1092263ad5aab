"""Workloads on the layer store: ``image load`` of a one-layer, many-file image. Reference: ``tar -xf``."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

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
