"""Workloads on whole layers: apply, export, remove. References: GNU tar and rm."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from drivebay.bench.measure import run_quiet
from drivebay.bench.workloads import BenchEnv, Workload


class CountingSink:
    """A binary file-like that writes to a real file on the benchmarked fs, as ``tar -cf`` does."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "wb")  # noqa: SIM115 - closed by close()

    def write(self, data: bytes) -> int:
        return self.file.write(data)

    def close(self) -> None:
        self.file.close()


def applied_pool(env: BenchEnv) -> list[tuple[str, Path]]:
    """Layers (and ``tar -xf`` trees) that apply-small-files made, handed on for remove-image to remove.

    apply-small-files leaves exactly what remove-image's setup would build (the
    50,000-file tar applied with no parent, and extracted), so remove-image takes
    these instead of applying and extracting again.
    """

    def release(pool: list[tuple[str, Path]]) -> None:
        for layer, tree in pool:
            env.remove_layer(layer)
            run_quiet("rm", "-rf", str(tree))

    return env.shared("applied-small", list, release)


class ApplySmallFiles(Workload):
    name = "apply-small-files"
    description = "apply a layer of many small files (~50,000, stdlib-like sizes)"
    reference = "tar -xf"
    shares: ClassVar[tuple[str, ...]] = ("applied-small",)

    def setup(self, env: BenchEnv) -> None:
        self.tar = env.data.small_tar
        self.dest = env.scratch_dir("tar-x")
        self.layer: str | None = None

    def run(self, env: BenchEnv) -> None:
        self.layer = env.create_from_tar(None, self.tar, "apply")

    def run_reference(self, env: BenchEnv) -> None:
        run_quiet("tar", "--numeric-owner", "-xf", str(self.tar), "-C", str(self.dest))

    def teardown(self, env: BenchEnv) -> None:
        # apply-big-file shares nothing: its layer is not what remove-image removes.
        if self.shares and self.layer is not None and self.layer in env.layers:
            env.layers.remove(self.layer)
            applied_pool(env).append((self.layer, self.dest))
            return
        super().teardown(env)
        run_quiet("rm", "-rf", str(self.dest))


class ApplyBigFile(ApplySmallFiles):
    name = "apply-big-file"
    description = "apply a layer holding one 1 GiB file"
    shares = ()

    def setup(self, env: BenchEnv) -> None:
        super().setup(env)
        self.tar = env.data.big_tar


def small_layer(env: BenchEnv) -> str:
    """The 50,000-file layer, applied once per driver and filesystem for the workloads that only read it."""
    return env.shared("small-layer", lambda: env.create_from_tar(None, env.data.small_tar, "small"))


class ExportLayer(Workload):
    name = "export-layer"
    description = "diff (export) a whole many-file layer to a tar"
    reference = "tar --sort=name -cf"
    shares = ("small-layer",)

    def setup(self, env: BenchEnv) -> None:
        self.layer = small_layer(env)
        self.out = env.scratch_dir("export")

    def run(self, env: BenchEnv) -> None:
        sink = CountingSink(self.out / "driver.tar")
        try:
            env.driver.diff(self.layer, sink)  # type: ignore[arg-type]
        finally:
            sink.close()

    def run_reference(self, env: BenchEnv) -> None:
        tree = env.data.small_tree
        run_quiet("tar", "--sort=name", "--numeric-owner", "-C", str(tree), "-cf", str(self.out / "ref.tar"), ".")

    def teardown(self, env: BenchEnv) -> None:
        super().teardown(env)
        run_quiet("rm", "-rf", str(self.out))


class RemoveImage(Workload):
    name = "remove-image"
    description = "remove a many-file image layer"
    reference = "rm -rf"
    shares = ("applied-small",)

    def setup(self, env: BenchEnv) -> None:
        pool = applied_pool(env)
        if pool:
            self.layer, self.copy = pool.pop(0)
            env.layers.append(self.layer)
            return
        self.layer = env.create_from_tar(None, env.data.small_tar, "remove")
        self.copy = env.scratch_dir("rm")
        run_quiet("tar", "-xf", str(env.data.small_tar), "-C", str(self.copy))

    def run(self, env: BenchEnv) -> None:
        env.driver.remove(self.layer)
        env.layers.remove(self.layer)

    def run_reference(self, env: BenchEnv) -> None:
        run_quiet("rm", "-rf", str(self.copy))
