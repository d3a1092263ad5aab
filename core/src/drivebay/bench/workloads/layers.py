"""Workloads on whole layers: apply, export, remove. References: GNU tar and rm."""

from __future__ import annotations

from pathlib import Path

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


class ApplySmallFiles(Workload):
    name = "apply-small-files"
    description = "apply a layer of many small files (~50,000, stdlib-like sizes)"
    reference = "tar -xf"

    def setup(self, env: BenchEnv) -> None:
        self.tar = env.data.small_tar
        self.dest = env.scratch_dir("tar-x")

    def run(self, env: BenchEnv) -> None:
        env.create_from_tar(None, self.tar, "apply")

    def run_reference(self, env: BenchEnv) -> None:
        run_quiet("tar", "--numeric-owner", "-xf", str(self.tar), "-C", str(self.dest))

    def teardown(self, env: BenchEnv) -> None:
        super().teardown(env)
        run_quiet("rm", "-rf", str(self.dest))


class ApplyBigFile(ApplySmallFiles):
    name = "apply-big-file"
    description = "apply a layer holding one 1 GiB file"

    def setup(self, env: BenchEnv) -> None:
        self.tar = env.data.big_tar
        self.dest = env.scratch_dir("tar-x")


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

    def setup(self, env: BenchEnv) -> None:
        self.layer = env.create_from_tar(None, env.data.small_tar, "remove")
        self.copy = env.scratch_dir("rm")
        run_quiet("tar", "-xf", str(env.data.small_tar), "-C", str(self.copy))

    def run(self, env: BenchEnv) -> None:
        env.driver.remove(self.layer)
        env.layers.remove(self.layer)

    def run_reference(self, env: BenchEnv) -> None:
        run_quiet("rm", "-rf", str(self.copy))
