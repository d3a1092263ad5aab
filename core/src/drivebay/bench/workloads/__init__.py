"""Bench workloads: the ``Workload`` base, the data they share, and their discovery.

Built-in workloads register through the entry-point group
``drivebay.bench_workloads`` exactly as a third party's would.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import random
import shutil
import subprocess
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import ClassVar, TypeVar

from drivebay.bench.datagen import write_big_file, write_stdlib_like_tree
from drivebay.bench.measure import Phases
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


def tar_tree(source: Path, tar: Path) -> Path:
    """``tar`` of everything under ``source``, members sorted so the bytes depend only on the tree."""
    subprocess.run(["tar", "--sort=name", "--numeric-owner", "-C", str(source), "-cf", str(tar), "."], check=True)
    return tar


class RunData:
    """Seeded data generated once per run, in a cache directory, and shared by every filesystem and driver.

    The tars here are only ever read, by the driver and its reference alike, so
    where they live does not change what is measured; trees a reference reads
    are copied onto the benchmarked filesystem by :class:`FsData`.
    """

    def __init__(self, cache: Path, scale: Scale, seed: int, phases: Phases) -> None:
        self.dir = cache
        self.scale = scale
        self.seed = seed
        self.phases = phases
        self._made: dict[str, Path] = {}

    def cached(self, name: str, make: Callable[[Path], object]) -> Path:
        """``self.dir / name``, made by ``make(path)`` the first time it is asked for."""
        if name not in self._made:
            with self.phases.phase("datagen"):
                make(self.dir / name)
            self._made[name] = self.dir / name
        return self._made[name]

    @cached_property
    def small_tree(self) -> Path:
        return self.cached("small-tree", lambda tree: write_stdlib_like_tree(tree, self.scale.small_files, self.seed))

    @cached_property
    def small_tar(self) -> Path:
        return self.cached("small.tar", lambda tar: tar_tree(self.small_tree, tar))

    @cached_property
    def changed_files(self) -> list[Path]:
        """The seeded choice of files the change workloads rewrite, relative to the small tree."""
        with self.phases.phase("datagen"):
            files = sorted(p.relative_to(self.small_tree) for p in self.small_tree.rglob("*.py"))
            return sorted(random.Random(self.seed).sample(files, min(self.scale.changed_files, len(files))))

    def _big_tar(self, tar: Path) -> None:
        tree = self.dir / "big-tree"
        tree.mkdir()
        write_big_file(tree / "big.bin", self.scale.big_file_bytes, self.seed)
        tar_tree(tree, tar)
        shutil.rmtree(tree)

    @cached_property
    def big_tar(self) -> Path:
        return self.cached("big.tar", self._big_tar)

    @cached_property
    def copy_up_file(self) -> Path:
        def make(tree: Path) -> None:
            tree.mkdir()
            write_big_file(tree / "data.bin", self.scale.copy_up_bytes, self.seed + 1)

        return self.cached("copy-up-tree", make) / "data.bin"

    @cached_property
    def copy_up_tar(self) -> Path:
        return self.cached("copy-up.tar", lambda tar: tar_tree(self.copy_up_file.parent, tar))

    def read_layer_tars(self) -> list[Path]:
        """One tar per layer of the read stack, each adding its own files."""

        def make(layer: int) -> Callable[[Path], object]:
            def write(tar: Path) -> None:
                tree = self.dir / f"read-{layer}"
                write_stdlib_like_tree(tree / f"layer{layer}", self.scale.files_per_read_layer, self.seed + layer)
                tar_tree(tree, tar)
                shutil.rmtree(tree)

            return write

        return [self.cached(f"read-{layer}.tar", make(layer)) for layer in range(self.scale.read_layers)]

    def tiny_tar(self, index: int) -> Path:
        def write(tar: Path) -> None:
            tree = self.dir / f"tiny-{index}"
            (tree / "layers").mkdir(parents=True)
            (tree / "layers" / f"{index}").write_text(f"layer {index}\n")
            tar_tree(tree, tar)
            shutil.rmtree(tree)

        return self.cached(f"tiny-{index}.tar", write)


class FsData:
    """The run's data, plus copies on one benchmarked filesystem of the trees that references read.

    A reference reading a tree (``tar -cf``, ``cp``) must read it from the same
    filesystem as the driver reads its layer; the copies are made once per
    filesystem and shared by every driver on it.
    """

    def __init__(self, directory: Path, run: RunData) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.run = run
        self.scale = run.scale
        self.seed = run.seed

    @property
    def small_tar(self) -> Path:
        return self.run.small_tar

    @property
    def big_tar(self) -> Path:
        return self.run.big_tar

    @property
    def copy_up_tar(self) -> Path:
        return self.run.copy_up_tar

    def read_layer_tars(self) -> list[Path]:
        return self.run.read_layer_tars()

    def tiny_tar(self, index: int) -> Path:
        return self.run.tiny_tar(index)

    @cached_property
    def small_tree(self) -> Path:
        """The small tree on this filesystem (extracted from the run's tar: the same names and bytes)."""
        tar = self.run.small_tar
        tree = self.dir / "small-tree"
        with self.run.phases.phase("data-copy"):
            tree.mkdir()
            subprocess.run(["tar", "--numeric-owner", "-xf", str(tar), "-C", str(tree)], check=True)
        return tree

    @cached_property
    def copy_up_file(self) -> Path:
        source = self.run.copy_up_file
        with self.run.phases.phase("data-copy"):
            copy = self.dir / "copy-up.bin"
            shutil.copyfile(source, copy)
        return copy


_ids = itertools.count()

T = TypeVar("T")


@dataclass
class _Shared:
    value: object
    layers: list[str]
    release: Callable[[], None] | None


@dataclass
class BenchEnv:
    """What one workload run gets: the driver under test, a scratch dir on the same fs, shared data.

    ``shared`` fixtures (a 50,000-file layer, a 128-layer chain) are built once
    per driver and filesystem and kept while the workloads that name them in
    ``Workload.shares`` run; the runner releases the others before each workload,
    so a workload's disk usage and caches see only what it uses.
    """

    driver: GraphDriver
    scratch: Path
    data: FsData
    phases: Phases
    layers: list[str] = field(default_factory=list)
    _shared: dict[str, _Shared] = field(default_factory=dict)

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

    def remove_layer(self, layer_id: str) -> None:
        """Unmount and remove one layer this run made."""
        while self.driver.exists(layer_id) and self.driver.refcount(layer_id):
            self.driver.put(layer_id)
        if self.driver.exists(layer_id):
            self.driver.remove(layer_id)
        if layer_id in self.layers:
            self.layers.remove(layer_id)

    def remove_layers(self) -> None:
        """Unmount and remove every layer this run made, children first (shared fixtures stay)."""
        for layer_id in reversed(list(self.layers)):
            self.remove_layer(layer_id)

    def shared(self, key: str, build: Callable[[], T], release: Callable[[T], None] | None = None) -> T:
        """The fixture ``key``, built by ``build()`` the first time; layers it creates belong to the fixture.

        ``release(value)`` runs when the fixture is dropped, before its layers are removed.
        """
        if key in self._shared:
            return self._shared[key].value  # type: ignore[return-value]
        with self.phases.phase("fixtures"):
            own, self.layers = self.layers, []
            try:
                value = build()
            except BaseException:
                self.remove_layers()
                raise
            finally:
                made, self.layers = self.layers, own
            self._shared[key] = _Shared(value, made, (lambda: release(value)) if release else None)
        return value

    def release_shared(self, keep: Collection[str] = ()) -> None:
        """Drop every fixture not in ``keep``, newest first (a fixture built on another goes before it)."""
        for key in reversed(list(self._shared)):
            if key in keep:
                continue
            shared = self._shared.pop(key)
            with self.phases.phase("fixtures"):
                if shared.release:
                    shared.release()
                own, self.layers = self.layers, shared.layers
                try:
                    self.remove_layers()
                finally:
                    self.layers = own


class Workload:
    """One measured operation and its reference, both run on the same filesystem.

    ``setup`` and ``teardown`` are not timed; ``run`` times the driver and
    ``run_reference`` the reference. Instances are made fresh for every
    repetition. A workload whose single run takes milliseconds sets
    ``iterations``: each sample then times that many runs of each side,
    interleaved (``before_timed``/``after_timed`` around every run), and reports
    the median run's wall time and the mean CPU time per run. ``shares`` names the ``BenchEnv.shared`` fixtures it uses
    (a fixture built on another must name both).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    reference: ClassVar[str]
    iterations: ClassVar[int] = 1
    shares: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.notes: list[str] = []
        # The runner sets it for the last repetition: what that leaves may be handed on to another workload.
        self.last_run = False

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
