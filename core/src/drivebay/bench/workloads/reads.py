"""Reading every file through a 32-layer stack, cold and warm. Reference: the same files in a plain directory."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from drivebay.bench.measure import drop_caches, run_quiet
from drivebay.bench.workloads import BenchEnv, Workload


def read_every_file(root: Path) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as f:
                total += len(f.read())
    return total


class ReadStackWarm(Workload):
    name = "read-32-layers-warm"
    description = "read every file through a 32-layer stack, page cache warm"
    reference = "the same reads from a plain directory"
    cold = False
    shares = ("read-stack",)

    def unsupported(self, env: BenchEnv) -> str | None:
        limit = env.driver.capabilities.max_depth
        return f"driver mounts at most {limit} layers" if limit < env.data.scale.read_layers + 1 else None

    def setup(self, env: BenchEnv) -> None:
        # Reads change nothing: the stack and its plain copy serve warm and cold, every run.
        self.view, self.plain = env.shared(
            "read-stack", lambda: _read_stack(env), lambda stack: shutil.rmtree(stack[1])
        )
        if not self.cold:
            read_every_file(self.view)
            read_every_file(self.plain)

    def before_timed(self, env: BenchEnv, reference: bool) -> None:
        if self.cold:
            note = drop_caches(self.plain)
            if note and note not in self.notes:
                self.notes.append(note)

    def run(self, env: BenchEnv) -> None:
        read_every_file(self.view)

    def run_reference(self, env: BenchEnv) -> None:
        read_every_file(self.plain)


def _read_stack(env: BenchEnv) -> tuple[Path, Path]:
    """A container on the read layers, mounted, and a plain directory with the same files."""
    parent: str | None = None
    plain = env.scratch_dir("plain")
    for tar in env.data.read_layer_tars():
        parent = env.create_from_tar(parent, tar, "read")
        run_quiet("tar", "-xf", str(tar), "-C", str(plain))
    container = env.create_rw(parent, "container")
    return env.driver.get(container), plain


class ReadStackCold(ReadStackWarm):
    name = "read-32-layers-cold"
    description = "read every file through a 32-layer stack after dropping caches"
    cold = True
