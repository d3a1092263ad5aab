"""Workloads on containers: create and mount on deep images, copy-up, diff after changes."""

from __future__ import annotations

import os
import random
import shutil
import subprocess

from drivebay.bench.datagen import rewrite_files
from drivebay.bench.measure import run_quiet
from drivebay.bench.workloads import BenchEnv, Workload
from drivebay.bench.workloads.layers import CountingSink
from drivebay.fs.backing import backing_filesystem
from drivebay.fs.mounts import unmount
from drivebay.fs.mountspec import mount_described


class _Chain(Workload):
    depth: int = 1

    def unsupported(self, env: BenchEnv) -> str | None:
        limit = env.driver.capabilities.max_depth
        if self.depth + 1 > limit:
            return f"driver mounts at most {limit} layers"
        return None

    def setup(self, env: BenchEnv) -> None:
        parent: str | None = None
        for index in range(self.depth):
            parent = env.create_from_tar(parent, env.data.tiny_tar(index), f"chain{self.depth}")
        self.top = parent


class CreateContainer(_Chain):
    name = "create-1"
    description = "create a container layer on a 1-layer image"
    reference = "cp -a (btrfs: btrfs subvolume snapshot)"

    def setup(self, env: BenchEnv) -> None:
        super().setup(env)
        self.top_path = env.driver.get(self.top) if self.top else None
        self.target = env.scratch / f"cp-{self.name}-{os.getpid()}"

    def run(self, env: BenchEnv) -> None:
        env.create_rw(self.top, "container")

    def run_reference(self, env: BenchEnv) -> None:
        assert self.top_path is not None
        if backing_filesystem(env.scratch) == "btrfs" and env.driver.name == "btrfs":
            run_quiet("btrfs", "subvolume", "snapshot", str(self.top_path), str(self.target))
        else:
            run_quiet("cp", "-a", str(self.top_path), str(self.target))

    def teardown(self, env: BenchEnv) -> None:
        if self.top:
            env.driver.put(self.top)
        super().teardown(env)
        if self.target.exists():
            subprocess.run(["btrfs", "subvolume", "delete", str(self.target)], capture_output=True, check=False)
            shutil.rmtree(self.target, ignore_errors=True)


class CreateContainer16(CreateContainer):
    name = "create-16"
    description = "create a container layer on a 16-layer image"
    depth = 16


class CreateContainer128(CreateContainer):
    name = "create-128"
    description = "create a container layer on a 128-layer image"
    depth = 128


class MountContainer(_Chain):
    name = "mount-1"
    description = "mount a container on a 1-layer image"
    reference = "bare mount(2) of the driver's own mount spec"

    def setup(self, env: BenchEnv) -> None:
        super().setup(env)
        self.container = env.create_rw(self.top, "container")
        self.spec = env.driver.mounts(self.container)
        self.target = env.scratch_dir("mnt")

    def run(self, env: BenchEnv) -> None:
        env.driver.get(self.container)

    def after_timed(self, env: BenchEnv, reference: bool) -> None:
        if reference:
            unmount(self.target)
        else:
            env.driver.put(self.container)

    def run_reference(self, env: BenchEnv) -> None:
        for spec in self.spec:
            mount_described(spec, self.target)

    def teardown(self, env: BenchEnv) -> None:
        super().teardown(env)
        self.target.rmdir()


class MountContainer16(MountContainer):
    name = "mount-16"
    description = "mount a container on a 16-layer image"
    depth = 16


class MountContainer128(MountContainer):
    name = "mount-128"
    description = "mount a container on a 128-layer image"
    depth = 128


class CopyUp(Workload):
    name = "copy-up"
    description = "first write to a 100 MB file that comes from a lower layer"
    reference = "cp of the file on the same fs"

    def setup(self, env: BenchEnv) -> None:
        self.base = env.create_from_tar(None, env.data.copy_up_tar, "copyup")
        self.container = env.create_rw(self.base, "container")
        self.view = env.driver.get(self.container)
        self.copy_dir = env.scratch_dir("cp")

    def run(self, env: BenchEnv) -> None:
        with open(self.view / "data.bin", "r+b") as f:
            f.write(b"x")
            os.fsync(f.fileno())

    def run_reference(self, env: BenchEnv) -> None:
        source = env.data.dir / "copy-up-tree" / "data.bin"
        run_quiet("cp", str(source), str(self.copy_dir / "data.bin"))
        with open(self.copy_dir / "data.bin", "r+b") as f:
            f.write(b"x")
            os.fsync(f.fileno())

    def teardown(self, env: BenchEnv) -> None:
        env.driver.put(self.container)
        super().teardown(env)
        shutil.rmtree(self.copy_dir)


class DiffAfterChanges(Workload):
    name = "diff-after-changes"
    description = "diff a container after changing 1,000 files on a 50,000-file image"
    reference = "tar --sort=name -cf of the changed files"

    def setup(self, env: BenchEnv) -> None:
        self.base = env.create_from_tar(None, env.data.small_tar, "diffbase")
        self.container = env.create_rw(self.base, "container")
        tree = env.data.small_tree[0]
        files = sorted(p.relative_to(tree) for p in tree.rglob("*.py"))
        chosen = random.Random(env.data.seed).sample(files, min(env.data.scale.changed_files, len(files)))
        with env.driver.mounted(self.container) as view:
            rewrite_files([view / p for p in chosen], env.data.seed)
        self.changed_tree = env.scratch_dir("changed")
        self.list_file = self.changed_tree / "list"
        self.list_file.write_text("".join(f"./{p}\n" for p in sorted(chosen)))
        self.source = tree
        self.out = env.scratch_dir("diff")

    def run(self, env: BenchEnv) -> None:
        sink = CountingSink(self.out / "driver.tar")
        try:
            env.driver.diff(self.container, sink)  # type: ignore[arg-type]
        finally:
            sink.close()

    def run_reference(self, env: BenchEnv) -> None:
        run_quiet(
            "tar", "--sort=name", "-C", str(self.source), "-cf", str(self.out / "ref.tar"), "-T", str(self.list_file)
        )

    def teardown(self, env: BenchEnv) -> None:
        super().teardown(env)
        shutil.rmtree(self.out)
        shutil.rmtree(self.changed_tree)


class NativeDiffVsNaive(DiffAfterChanges):
    name = "diff-vs-naive"
    description = "diff a container after changing 1,000 files on a 50,000-file image"
    reference = "core's naive diff (tree comparison) of the same layer"

    def run_reference(self, env: BenchEnv) -> None:
        sink = CountingSink(self.out / "naive.tar")
        try:
            env.driver.naive_diff(self.container, self.base, sink)  # type: ignore[arg-type]
        finally:
            sink.close()


class NativeChangesVsNaive(DiffAfterChanges):
    name = "changes-vs-naive"
    description = "list the changes of a container after changing 1,000 files on a 50,000-file image"
    reference = "core's naive changes (tree comparison) of the same layer"

    def run(self, env: BenchEnv) -> None:
        env.driver.changes(self.container)

    def run_reference(self, env: BenchEnv) -> None:
        env.driver.naive_changes(self.container, self.base)
