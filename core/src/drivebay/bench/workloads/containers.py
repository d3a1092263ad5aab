"""Workloads on containers: create and mount on deep images, copy-up, diff after changes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from drivebay.bench.datagen import rewrite_files
from drivebay.bench.measure import run_quiet, settle
from drivebay.bench.workloads import BenchEnv, Workload
from drivebay.bench.workloads.layers import CountingSink, small_layer
from drivebay.fs.backing import backing_filesystem
from drivebay.fs.mounts import unmount
from drivebay.fs.mountspec import prepare_mount


class _Chain(Workload):
    depth: int = 1
    # One create or mount takes milliseconds: a sample of 20 makes the ratio more than noise.
    iterations = 20

    def unsupported(self, env: BenchEnv) -> str | None:
        limit = env.driver.capabilities.max_depth
        if self.depth + 1 > limit:
            return f"driver mounts at most {limit} layers"
        return None

    def setup(self, env: BenchEnv) -> None:
        def build() -> str:
            parent: str | None = None
            for index in range(self.depth):
                parent = env.create_from_tar(parent, env.data.tiny_tar(index), f"chain{self.depth}")
            assert parent is not None
            return parent

        # create-N and mount-N only read the chain: built once per driver and filesystem.
        self.top = env.shared(f"chain-{self.depth}", build)


class CreateContainer(_Chain):
    name = "create-1"
    description = "create a container layer on a 1-layer image"
    reference = "cp -a (btrfs: btrfs subvolume snapshot)"
    shares = ("chain-1",)

    def setup(self, env: BenchEnv) -> None:
        super().setup(env)
        self.top_path = env.driver.get(self.top)
        self.target = env.scratch / f"cp-{self.name}-{os.getpid()}"
        self.snapshot = backing_filesystem(env.scratch) == "btrfs" and env.driver.name == "btrfs"

    def before_timed(self, env: BenchEnv, reference: bool) -> None:
        settle(env.scratch)

    def run(self, env: BenchEnv) -> None:
        self.container = env.create_rw(self.top, "container")

    def run_reference(self, env: BenchEnv) -> None:
        if self.snapshot:
            run_quiet("btrfs", "subvolume", "snapshot", str(self.top_path), str(self.target))
        else:
            run_quiet("cp", "-a", str(self.top_path), str(self.target))

    def after_timed(self, env: BenchEnv, reference: bool) -> None:
        if not reference:
            env.remove_layer(self.container)
        elif self.snapshot:
            run_quiet("btrfs", "subvolume", "delete", str(self.target))
        else:
            run_quiet("rm", "-rf", str(self.target))

    def teardown(self, env: BenchEnv) -> None:
        env.driver.put(self.top)
        super().teardown(env)


class CreateContainer16(CreateContainer):
    name = "create-16"
    description = "create a container layer on a 16-layer image"
    depth = 16
    shares = ("chain-16",)


class CreateContainer128(CreateContainer):
    name = "create-128"
    description = "create a container layer on a 128-layer image"
    depth = 128
    shares = ("chain-128",)


class MountContainer(_Chain):
    name = "mount-1"
    description = "mount a container on a 1-layer image"
    reference = "bare mount(2) of the driver's own mount spec"
    shares = ("chain-1",)

    def setup(self, env: BenchEnv) -> None:
        super().setup(env)
        self.container = env.create_rw(self.top, "container")
        plan = env.driver.mounts(self.container)
        if plan.holds_reference:
            # A bind of the driver's view: let the view go, so that every timed get mounts it again.
            env.driver.put(self.container)
        # Parsed once, untimed: the reference times the mount system calls alone.
        self.mount_reference = [prepare_mount(spec) for spec in plan.mounts]
        self.target = env.scratch_dir("mnt")

    def run(self, env: BenchEnv) -> None:
        env.driver.get(self.container)

    def after_timed(self, env: BenchEnv, reference: bool) -> None:
        if reference:
            unmount(self.target)
        else:
            env.driver.put(self.container)

    def run_reference(self, env: BenchEnv) -> None:
        for mount in self.mount_reference:
            mount(self.target)

    def teardown(self, env: BenchEnv) -> None:
        super().teardown(env)
        self.target.rmdir()


class MountContainer16(MountContainer):
    name = "mount-16"
    description = "mount a container on a 16-layer image"
    depth = 16
    shares = ("chain-16",)


class MountContainer128(MountContainer):
    name = "mount-128"
    description = "mount a container on a 128-layer image"
    depth = 128
    shares = ("chain-128",)


class CopyUp(Workload):
    name = "copy-up"
    description = "first write to a 100 MB file that comes from a lower layer"
    reference = "cp of the file on the same fs"
    shares = ("copy-up-layer",)
    # Where copy-up and cp clone extents (btrfs, xfs) a run takes milliseconds.
    iterations = 5

    def setup(self, env: BenchEnv) -> None:
        # The image layer is only read; every run copies up in a fresh container.
        self.base = env.shared("copy-up-layer", lambda: env.create_from_tar(None, env.data.copy_up_tar, "copyup"))
        self.source = env.data.copy_up_file
        self.copy_dir = env.scratch_dir("cp")
        self._new_container(env)

    def _new_container(self, env: BenchEnv) -> None:
        self.container = env.create_rw(self.base, "container")
        self.view = env.driver.get(self.container)

    def run(self, env: BenchEnv) -> None:
        with open(self.view / "data.bin", "r+b") as f:
            f.write(b"x")
            os.fsync(f.fileno())

    def run_reference(self, env: BenchEnv) -> None:
        run_quiet("cp", str(self.source), str(self.copy_dir / "data.bin"))
        with open(self.copy_dir / "data.bin", "r+b") as f:
            f.write(b"x")
            os.fsync(f.fileno())

    def after_timed(self, env: BenchEnv, reference: bool) -> None:
        if reference:
            (self.copy_dir / "data.bin").unlink()
        else:
            env.remove_layer(self.container)
            self._new_container(env)

    def teardown(self, env: BenchEnv) -> None:
        super().teardown(env)
        shutil.rmtree(self.copy_dir)


def changed_list(env: BenchEnv) -> Path:
    """``tar -T`` input naming the changed files, sorted, relative to the small tree."""
    files = env.data.run.changed_files
    return env.data.run.cached("changed.list", lambda path: path.write_text("".join(f"./{p}\n" for p in sorted(files))))


def changed_container(env: BenchEnv) -> str:
    """A container on the 50,000-file layer with 1,000 files rewritten; diff and changes only read it."""

    def build() -> str:
        container = env.create_rw(small_layer(env), "container")
        with env.driver.mounted(container) as view:
            rewrite_files([view / p for p in env.data.run.changed_files], env.data.seed)
            # Committed before any timing, so that no side's first run pays for writing them out
            # (a btrfs diff commits pending writes before searching; the naive diff needs no commit).
            settle(view)
        return container

    return env.shared("small-changed", build)


class _OnChangedContainer(Workload):
    """The driver diffs the shared changed container."""

    shares = ("small-layer", "small-changed")

    def setup(self, env: BenchEnv) -> None:
        self.base = small_layer(env)
        self.container = changed_container(env)
        self.out = env.scratch_dir("diff")
        self.notes.append("the 1,000 changed files were written back and committed before timing")
        self.notes.append("the filesystem is settled before each side, so neither commits the other's output tar")

    def before_timed(self, env: BenchEnv, reference: bool) -> None:
        # Each side writes its tar to this filesystem; a btrfs diff commits before its search, and would
        # otherwise pay for writing back the tar of the run before.
        settle(self.out)

    def run(self, env: BenchEnv) -> None:
        sink = CountingSink(self.out / "driver.tar")
        try:
            env.driver.diff(self.container, sink)  # type: ignore[arg-type]
        finally:
            sink.close()

    def teardown(self, env: BenchEnv) -> None:
        super().teardown(env)
        shutil.rmtree(self.out)


class DiffAfterChanges(_OnChangedContainer):
    name = "diff-after-changes"
    description = "diff a container after changing 1,000 files on a 50,000-file image"
    reference = "tar --sort=name -cf of the changed files"

    def setup(self, env: BenchEnv) -> None:
        super().setup(env)
        self.list_file = changed_list(env)
        self.source = env.data.small_tree

    def run_reference(self, env: BenchEnv) -> None:
        run_quiet(
            "tar", "--sort=name", "-C", str(self.source), "-cf", str(self.out / "ref.tar"), "-T", str(self.list_file)
        )


class NativeDiffVsNaive(_OnChangedContainer):
    name = "diff-vs-naive"
    description = "diff a container after changing 1,000 files on a 50,000-file image"
    reference = "core's naive diff (tree comparison) of the same layer"

    def run_reference(self, env: BenchEnv) -> None:
        sink = CountingSink(self.out / "naive.tar")
        try:
            env.driver.naive_diff(self.container, self.base, sink)  # type: ignore[arg-type]
        finally:
            sink.close()


class NativeChangesVsNaive(_OnChangedContainer):
    name = "changes-vs-naive"
    description = "list the changes of a container after changing 1,000 files on a 50,000-file image"
    reference = "core's naive changes (tree comparison) of the same layer"

    def run(self, env: BenchEnv) -> None:
        env.driver.changes(self.container)

    def run_reference(self, env: BenchEnv) -> None:
        env.driver.naive_changes(self.container, self.base)
