"""Bench workloads: the ``Workload`` base, the data they share, and their discovery.

Built-in workloads register through the entry-point group
``drivebay.bench_workloads`` exactly as a third party's would.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import ClassVar

from drivebay.bench.datagen import TreeStats, write_big_file, write_stdlib_like_tree
from drivebay.facades.graph import GraphDriver

GROUP = "drivebay.bench_workloads"


@dataclass(frozen=True)
class Scale:
    """Sizes of the generated data; ``--quick`` shrinks everything but keeps every workload."""

    small_files: int
    big_file_bytes: int
    copy_up_bytes: int
    read_layers: int
    files_per_read_layer: int
    changed_files: int

    @classmethod
    def full(cls) -> Scale:
        return cls(50_000, 1 << 30, 100 * 1000 * 1000, 32, 200, 1000)

    @classmethod
    def quick(cls) -> Scale:
        return cls(2_000, 64 << 20, 16 * 1000 * 1000, 32, 20, 200)


class FsData:
    """Data generated once per filesystem and shared by every driver benchmarked on it."""

    def __init__(self, scratch: Path, scale: Scale, seed: int) -> None:
        self.dir = scratch / "data"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.scale = scale
        self.seed = seed

    def _tar(self, source: Path, tar: Path) -> Path:
        if not tar.exists():
            subprocess.run(
                ["tar", "--sort=name", "--numeric-owner", "-C", str(source), "-cf", str(tar), "."], check=True
            )
        return tar

    @cached_property
    def small_tree(self) -> tuple[Path, TreeStats]:
        tree = self.dir / "small-tree"
        stats = write_stdlib_like_tree(tree, self.scale.small_files, self.seed)
        return tree, stats

    @cached_property
    def small_tar(self) -> Path:
        return self._tar(self.small_tree[0], self.dir / "small.tar")

    @cached_property
    def big_tar(self) -> Path:
        tree = self.dir / "big-tree"
        tree.mkdir(exist_ok=True)
        write_big_file(tree / "big.bin", self.scale.big_file_bytes, self.seed)
        tar = self._tar(tree, self.dir / "big.tar")
        shutil.rmtree(tree)
        return tar

    @cached_property
    def copy_up_tar(self) -> Path:
        tree = self.dir / "copy-up-tree"
        tree.mkdir(exist_ok=True)
        write_big_file(tree / "data.bin", self.scale.copy_up_bytes, self.seed + 1)
        return self._tar(tree, self.dir / "copy-up.tar")

    def read_layer_tars(self) -> list[Path]:
        """One tar per layer of the read stack, each adding its own files."""
        tars = []
        for layer in range(self.scale.read_layers):
            tree = self.dir / f"read-{layer}"
            if not tree.exists():
                write_stdlib_like_tree(tree / f"layer{layer}", self.scale.files_per_read_layer, self.seed + layer)
            tars.append(self._tar(tree, self.dir / f"read-{layer}.tar"))
        return tars

    def tiny_tar(self, index: int) -> Path:
        tree = self.dir / f"tiny-{index}"
        if not tree.exists():
            (tree / "layers").mkdir(parents=True)
            (tree / "layers" / f"{index}").write_text(f"layer {index}\n")
        return self._tar(tree, self.dir / f"tiny-{index}.tar")


_ids = itertools.count()


@dataclass
class BenchEnv:
    """What one workload run gets: the driver under test, a scratch dir on the same fs, shared data."""

    driver: GraphDriver
    scratch: Path
    data: FsData
    layers: list[str] = field(default_factory=list)

    def new_layer_id(self, prefix: str) -> str:
        return f"bench-{prefix}-{next(_ids)}"

    def scratch_dir(self, name: str) -> Path:
        path = self.scratch / f"{name}-{next(_ids)}"
        path.mkdir(parents=True)
        return path

    def create_from_tar(self, parent: str | None, tar: Path, prefix: str) -> str:
        layer_id = self.new_layer_id(prefix)
        with open(tar, "rb") as f:
            self.driver.create_from_tar(layer_id, parent, f)
        self.layers.append(layer_id)
        return layer_id

    def create_rw(self, parent: str | None, prefix: str) -> str:
        layer_id = self.new_layer_id(prefix)
        self.driver.create_rw(layer_id, parent)
        self.layers.append(layer_id)
        return layer_id

    def remove_layers(self) -> None:
        """Unmount and remove every layer this run made, children first."""
        for layer_id in reversed(self.layers):
            while self.driver.exists(layer_id) and self.driver.refcount(layer_id):
                self.driver.put(layer_id)
            if self.driver.exists(layer_id):
                self.driver.remove(layer_id)
        self.layers.clear()


class Workload:
    """One measured operation and its reference, both run on the same filesystem.

    ``setup`` and ``teardown`` are not timed; ``run`` times the driver and
    ``run_reference`` the reference. Instances are made fresh for every
    repetition.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    reference: ClassVar[str]

    def __init__(self) -> None:
        self.notes: list[str] = []

    def unsupported(self, env: BenchEnv) -> str | None:
        """Why this workload cannot run for this driver here, or ``None``."""
        return None

    def setup(self, env: BenchEnv) -> None:
        """Prepare, untimed."""

    def before_timed(self, env: BenchEnv, reference: bool) -> None:
        """Untimed, just before the driver's (or the reference's) timed block: drop caches, for example."""

    def after_timed(self, env: BenchEnv, reference: bool) -> None:
        """Untimed, just after it: release what the timed block took."""

    def run(self, env: BenchEnv) -> None:
        raise NotImplementedError

    def run_reference(self, env: BenchEnv) -> None:
        raise NotImplementedError

    def teardown(self, env: BenchEnv) -> None:
        env.remove_layers()


def installed_workloads() -> dict[str, type[Workload]]:
    """Every workload class from the ``drivebay.bench_workloads`` entry points, by name."""
    found: dict[str, type[Workload]] = {}
    for ep in sorted(importlib.metadata.entry_points(group=GROUP), key=lambda e: e.name):
        workload = ep.load()
        found[ep.name] = workload
    return found
