"""How fast drivebay.archive applies and writes a big layer, against GNU tar on the same data.

Run as root (it mounts a tmpfs): ``.venv/bin/python bench/archive_speed.py [--files 50000] [--seed 1]``.

It generates a seeded tree shaped like a Python standard library install
(nested package directories, many small ``.py`` files, a few large ones,
some symlinks), then times, median of 3 runs each:

- apply: ``apply_layer_tar`` of a layer tar of the tree, vs ``tar -xf``;
- diff: ``write_tree_tar`` of the tree, vs ``tar --sort=name -cf``.

and prints both ratios, of wall time (the issue asks for at most 1.3) and of
CPU time (steadier when other work shares the machine). Everything lives on
the tmpfs, which is unmounted at the end, failures included.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from drivebay.archive import WhiteoutFormat, apply_layer_tar, write_tree_tar
from drivebay.fs.loopfs import scratch_filesystem

RUNS = 3


def generate_tree(root: Path, files: int, seed: int) -> int:
    """A stdlib-like tree of about ``files`` files; returns its total bytes."""
    rng = random.Random(seed)
    dirs = [root]
    # Packages nest at most 4 deep below the root, as in lib/python3.x.
    can_nest = [(root, 0)]
    total = 0
    for index in range(files):
        if rng.random() < 0.06 or len(dirs) == 1:
            parent, depth = rng.choice(can_nest[-50:])
            new = parent / f"pkg_{len(dirs)}"
            new.mkdir()
            dirs.append(new)
            if depth + 1 < 4:
                can_nest.append((new, depth + 1))
        parent = rng.choice(dirs[-20:])
        if rng.random() < 0.02:
            os.symlink(f"module_{index - 1}.py", parent / f"alias_{index}.py")
            continue
        # Log-normal sizes: median ~4 KiB, a long tail up to a few MiB, like .py/.pyc/.so files.
        size = min(int(rng.lognormvariate(8.3, 1.4)), 4 << 20)
        (parent / f"module_{index}.py").write_bytes(rng.randbytes(size))
        total += size
    return total


def _cpu_seconds() -> float:
    # Ours runs in this process, GNU tar in a child: count both, user and system time.
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def median_time(run: Callable[[], None], reset: Callable[[], None]) -> tuple[float, float]:
    """Median wall and CPU seconds of ``RUNS`` runs of ``run``, each after ``reset``.

    CPU time is printed too because on a busy machine wall time mostly
    measures the other processes.
    """
    walls, cpus = [], []
    for _ in range(RUNS):
        reset()
        wall, cpu = time.perf_counter(), _cpu_seconds()
        run()
        walls.append(time.perf_counter() - wall)
        cpus.append(_cpu_seconds() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def fresh_dir(path: Path) -> Callable[[], None]:
    """A reset that makes ``path`` an empty directory."""

    def reset() -> None:
        if path.exists():
            shutil.rmtree(path)
        path.mkdir()

    return reset


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("archive_speed: needs root to mount its tmpfs", file=sys.stderr)
        return 1
    with scratch_filesystem("tmpfs", size_mb=8192) as mnt:
        tree = mnt / "tree"
        tree.mkdir()
        total = generate_tree(tree, args.files, args.seed)
        print(f"tree: {args.files} files, {total / 2**20:.0f} MiB, seed {args.seed}")
        ours_tar = mnt / "ours.tar"
        gnu_tar = mnt / "gnu.tar"
        out_dir = mnt / "out"

        def ours_diff() -> None:
            with open(ours_tar, "wb") as out:
                write_tree_tar(out, tree, WhiteoutFormat.DELETE)

        def gnu_diff() -> None:
            subprocess.run(
                ["tar", "--sort=name", "--numeric-owner", "-C", str(tree), "-cf", str(gnu_tar), "."], check=True
            )

        def ours_apply() -> None:
            with open(ours_tar, "rb") as tar:
                apply_layer_tar(tar, out_dir, WhiteoutFormat.DELETE)

        def gnu_apply() -> None:
            subprocess.run(["tar", "--numeric-owner", "-C", str(out_dir), "-xf", str(ours_tar)], check=True)

        def nothing() -> None:
            pass

        diff_ours = median_time(ours_diff, nothing)
        diff_gnu = median_time(gnu_diff, nothing)
        apply_ours = median_time(ours_apply, fresh_dir(out_dir))
        apply_gnu = median_time(gnu_apply, fresh_dir(out_dir))
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for label, ours, gnu in (
        ("diff  (write_tree_tar vs tar --sort=name -cf)", diff_ours, diff_gnu),
        ("apply (apply_layer_tar vs tar -xf)           ", apply_ours, apply_gnu),
    ):
        print(
            f"{label}: wall {ours[0]:.2f}s vs {gnu[0]:.2f}s = {ours[0] / gnu[0]:.2f}x, "
            f"CPU {ours[1]:.2f}s vs {gnu[1]:.2f}s = {ours[1] / gnu[1]:.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
