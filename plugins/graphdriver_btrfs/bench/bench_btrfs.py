"""Benchmarks of the btrfs graph driver, as ratios measured in one run (root only; not part of the tests).

    python bench/bench_btrfs.py tools      # ioctl vs btrfs CLI: snapshot and delete
    python bench/bench_btrfs.py create     # child of a 50,000-file layer vs a bare `btrfs subvolume snapshot`
    python bench/bench_btrfs.py diff       # diff after 1,000 changed files on a 50,000-file image vs naive diff

Each runs on its own loop-mounted btrfs and prints the median of several runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import BinaryIO

from drivebay import archive
from drivebay.facades.graph import GraphDriver
from drivebay.fs import btrfs
from drivebay.fs.loopfs import scratch_filesystem
from drivebay.loader import KINDS, load_driver
from drivebay.state import StateDB

FILES = 50_000
CHANGED = 1_000


def _median(samples: list[float]) -> float:
    return statistics.median(samples)


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _fill(root: Path, files: int) -> None:
    """``files`` small files in directories of 500, like an image's /usr."""
    for i in range(files):
        directory = root / f"d{i // 500:03d}"
        if i % 500 == 0:
            directory.mkdir()
        (directory / f"f{i:05d}").write_bytes(b"x" * (i % 300))


def _cli(*args: str) -> None:
    subprocess.run(["btrfs", *args], check=True, capture_output=True)


def bench_tools(runs: int) -> None:
    with scratch_filesystem("btrfs", size_mb=1024) as mnt:
        source = mnt / "source"
        btrfs.create_subvolume(source)
        _fill(source, 2_000)
        btrfs.sync(source)
        names = ("ioctl snapshot", "cli snapshot", "ioctl delete", "cli delete")
        results: dict[str, list[float]] = {name: [] for name in names}
        for i in range(runs):
            a, b = mnt / f"a{i}", mnt / f"b{i}"
            results["ioctl snapshot"].append(_timed(partial(btrfs.snapshot, source, a, readonly=False)))
            results["cli snapshot"].append(_timed(partial(_cli, "subvolume", "snapshot", str(source), str(b))))
            results["ioctl delete"].append(_timed(partial(btrfs.delete_subvolume, a)))
            results["cli delete"].append(_timed(partial(_cli, "subvolume", "delete", str(b))))
        for name, samples in results.items():
            print(f"{name:16s} median {_median(samples) * 1000:8.2f} ms over {runs} runs")


def _open_driver(root: Path) -> GraphDriver:
    loaded = load_driver(KINDS["graph"], "btrfs")
    return GraphDriver(loaded, root / "btrfs", StateDB.for_root(root), {})


def _image(graph: GraphDriver, files: int) -> Path:
    """A read-only layer of ``files`` files, filled in place (as apply_diff would) and sealed."""
    graph.create_rw("fill", None)
    root = graph.get("fill")
    _fill(root, files)
    graph.put("fill")
    graph.create("image", "fill")
    btrfs.sync(root)
    return root


def bench_create(runs: int) -> None:
    with scratch_filesystem("btrfs", size_mb=4096) as mnt:
        graph = _open_driver(mnt)
        _image(graph, FILES)
        image = Path(graph.get("image"))
        graph.put("image")
        driver, bare = [], []
        for i in range(runs):
            driver.append(_timed(partial(graph.create_rw, f"c{i}", "image")))
            bare.append(_timed(partial(_cli, "subvolume", "snapshot", str(image), str(mnt / f"bare{i}"))))
        d, b = _median(driver), _median(bare)
        print(
            f"driver create_rw child of {FILES}-file layer: median {d * 1000:.2f} ms, min {min(driver) * 1000:.2f} ms"
        )
        print(f"bare `btrfs subvolume snapshot`:            median {b * 1000:.2f} ms, min {min(bare) * 1000:.2f} ms")
        print(f"ratio {d / b:.2f}x of medians, {min(driver) / min(bare):.2f}x of minimums (target <= 1.5x)")
        graph.state.close()


CHANGE_PATTERNS = {
    # Every 50th file: touches nearly every tree leaf, the worst case for a generation search.
    "spread": [(f"d{i // 500:03d}", f"f{i:05d}") for i in range(0, FILES, FILES // CHANGED)],
    # Two directories rewritten, as a package upgrade does.
    "clustered": [(f"d{i // 500:03d}", f"f{i:05d}") for i in range(10_000, 10_000 + CHANGED)],
}


def _diff_to(graph: GraphDriver, out: BinaryIO, native: bool) -> None:
    out.seek(0)
    out.truncate()
    if native:
        graph.diff("container", out)
        return
    with graph.mounted("container") as root, graph.mounted("image") as parent_root:
        archive.write_changes_tar(out, root, archive.naive_changes(root, parent_root))


def bench_diff(runs: int) -> None:
    for pattern, paths in CHANGE_PATTERNS.items():
        with scratch_filesystem("btrfs", size_mb=4096) as mnt:
            graph = _open_driver(mnt)
            _image(graph, FILES)
            graph.create_rw("container", "image")
            with graph.mounted("container") as root:
                for directory, name in paths:
                    (root / directory / name).write_bytes(b"changed")
            with tempfile.TemporaryFile() as out:
                # The first native diff also waits for the just-written data to reach the disk.
                first = _timed(partial(_diff_to, graph, out, True))
                native = [_timed(partial(_diff_to, graph, out, True)) for _ in range(runs)]
                native_size = out.tell()
                naive = [_timed(partial(_diff_to, graph, out, False)) for _ in range(runs)]
                assert out.tell() == native_size, "native and naive tars differ in size"
            changes = graph.changes("container")
            assert changes == graph.naive_changes("container", "image"), "native changes differ from naive"
            n, v = _median(native), _median(naive)
            print(f"[{pattern}] {len(changes)} changes ({CHANGED} files changed) on a {FILES}-file image")
            print(
                f"  native diff: first {first * 1000:.1f} ms, median {n * 1000:.1f} ms; naive: median {v * 1000:.1f} ms"
            )
            print(f"  minimums: native {min(native) * 1000:.1f} ms, naive {min(naive) * 1000:.1f} ms")
            print(
                f"  ratio {n / v:.3f}x of medians, {min(native) / min(naive):.3f}x of minimums, "
                f"first run {first / v:.3f}x (target <= 0.1x)"
            )
            graph.state.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("tools", "create", "diff"))
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("benchmarks loop-mount btrfs: run as root", file=sys.stderr)
        return 1
    {"tools": bench_tools, "create": bench_create, "diff": bench_diff}[args.what](args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
