"""How fast drivebay.archive applies and writes a big layer, against GNU tar on the same data.

Run as root (it mounts a tmpfs): ``.venv/bin/python bench/archive_speed.py [--files 50000] [--seed 1]``.

It generates a seeded tree shaped like a Python standard library install
(nested package directories, many small ``.py`` files, a few large ones,
some symlinks), then times, median of ``--runs`` (3) runs each:

- apply: ``apply_layer_tar`` of a layer tar of the tree, vs ``tar -xf``;
- diff: ``write_tree_tar`` of the tree, vs ``tar --sort=name -cf``.

Ours and GNU tar's runs alternate, so that other load on the machine falls
on both alike. It prints both ratios, of wall time (the issue asks for at
most 1.3) and of CPU time (steadier when other work shares the machine),
and the load average. Everything lives on the tmpfs, which is unmounted at
the end, failures included.
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


def timed(run: Callable[[], None]) -> tuple[float, float]:
    """Wall and CPU seconds of one ``run``."""
    wall, cpu = time.perf_counter(), _cpu_seconds()
    run()
    return time.perf_counter() - wall, _cpu_seconds() - cpu


def interleaved_medians(
    ours: Callable[[], None], gnu: Callable[[], None], reset: Callable[[], None], runs: int
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Median (wall, CPU) seconds of ``ours`` and of ``gnu``, each run ``runs`` times, alternating, after ``reset``.

    Alternating the two spreads whatever else the machine does over both sides
    alike; CPU time is printed too because on a busy machine wall time mostly
    measures the other processes.
    """
    samples: dict[str, list[tuple[float, float]]] = {"ours": [], "gnu": []}
    for _ in range(runs):
        for label, run in (("ours", ours), ("gnu", gnu)):
            reset()
            samples[label].append(timed(run))

    def median(label: str) -> tuple[float, float]:
        return (
            statistics.median(wall for wall, _ in samples[label]),
            statistics.median(cpu for _, cpu in samples[label]),
        )

    return median("ours"), median("gnu")


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
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=("apply", "diff"), help="time only this side")
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

        results = []
        if args.only != "apply":
            results.append(
                (
                    "diff  (write_tree_tar vs tar --sort=name -cf)",
                    *interleaved_medians(ours_diff, gnu_diff, nothing, args.runs),
                )
            )
        if args.only != "diff":
            if not ours_tar.exists():
                ours_diff()  # the layer tar to apply, untimed
            results.append(
                (
                    "apply (apply_layer_tar vs tar -xf)           ",
                    *interleaved_medians(ours_apply, gnu_apply, fresh_dir(out_dir), args.runs),
                )
            )
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for label, ours, gnu in results:
        print(
            f"{label}: wall {ours[0]:.2f}s vs {gnu[0]:.2f}s = {ours[0] / gnu[0]:.2f}x, "
            f"CPU {ours[1]:.2f}s vs {gnu[1]:.2f}s = {ours[1] / gnu[1]:.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
