"""Benchmarks of the btrfs graph driver, as ratios measured in one run (root only; not part of the tests).

    python bench/bench_btrfs.py tools      # ioctl vs btrfs CLI: snapshot and delete
    python bench/bench_btrfs.py create     # child of a 50,000-file layer vs a bare `btrfs subvolume snapshot`
    python bench/bench_btrfs.py diff       # diff after 1,000 changed files on a 50,000-file image vs naive diff

Each runs on its own loop-mounted btrfs. Driver and reference runs alternate
(the reference first in every other round), and each figure is the median of
the runs, in wall time and in CPU time (this process and its children).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import BinaryIO

from drivebay.bench.datagen import rewrite_files, write_stdlib_like_tree
from drivebay.facades.graph import GraphDriver
from drivebay.fs import btrfs
from drivebay.fs.backing import mount_holding
from drivebay.fs.loopfs import scratch_filesystem
from drivebay.loader import KINDS, load_driver
from drivebay.state import StateDB

FILES = 50_000
CHANGED = 1_000


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@dataclass
class Series:
    """Wall and CPU seconds of the runs of one thing."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def time(self, action: Callable[[], object]) -> None:
        cpu, wall = _cpu_seconds(), time.perf_counter()
        action()
        self.wall.append(time.perf_counter() - wall)
        self.cpu.append(_cpu_seconds() - cpu)

    def describe(self) -> str:
        wall, cpu = statistics.median(self.wall), statistics.median(self.cpu)
        return f"wall median {wall * 1000:8.2f} ms (min {min(self.wall) * 1000:8.2f}), cpu median {cpu * 1000:8.2f} ms"

    def ratio_to(self, reference: Series) -> str:
        wall = statistics.median(self.wall) / statistics.median(reference.wall)
        cpu = statistics.median(self.cpu) / statistics.median(reference.cpu)
        return f"{wall:.3f}x wall, {cpu:.3f}x cpu (ratios of medians)"


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


def _device_bytes_written(mount_point: Path) -> int:
    """Bytes the block device under ``mount_point`` (the loop device) has had written to it so far."""
    entry = mount_holding(mount_point)
    assert entry is not None and entry.source.startswith("/dev/"), f"{mount_point} is not on a block device"
    # Field 7 of /sys/block/<dev>/stat: sectors written, in 512-byte units whatever the device's block size.
    fields = Path(f"/sys/block/{Path(entry.source).name}/stat").read_text().split()
    return int(fields[6]) * 512


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


def _image(graph: GraphDriver, fill: Callable[[Path], object]) -> Path:
    """A read-only layer filled in place by ``fill`` (as apply_diff would) and sealed; its path."""
    graph.create_rw("fill", None)
    with graph.mounted("fill") as root:
        fill(root)
    graph.create("image", "fill")
    with graph.mounted("image") as image:
        return image


def _alternating(runs: int, first: Callable[[], None], second: Callable[[], None]) -> None:
    """Run both ``runs`` times, ``second`` first in every other round, so neither always follows the other."""
    for i in range(runs):
        for action in (first, second) if i % 2 == 0 else (second, first):
            action()


def bench_create(runs: int) -> None:
    with scratch_filesystem("btrfs", size_mb=4096) as mnt:
        graph = _open_driver(mnt)
        image = _image(graph, partial(_fill, files=FILES))
        driver, bare = Series(), Series()
        names = iter(range(1_000_000))

        def create() -> None:
            # Each timed snapshot commits a transaction; commit what is pending first (untimed), so it
            # commits only its own work and not what the previous run left (SQLite's WAL, a subvolume).
            btrfs.sync(mnt)
            driver.time(partial(graph.create_rw, f"c{next(names)}", "image"))

        def snapshot() -> None:
            btrfs.sync(mnt)
            bare.time(partial(_cli, "subvolume", "snapshot", str(image), str(mnt / f"bare{next(names)}")))

        _alternating(runs, create, snapshot)
        print(f"child of a {FILES}-file layer, {runs} runs each")
        print(f"  driver create_rw (facade):       {driver.describe()}")
        print(f"  bare `btrfs subvolume snapshot`: {bare.describe()}")
        print(f"  ratio {driver.ratio_to(bare)}; {min(driver.wall) / min(bare.wall):.2f}x of minimums (target <= 1.5x)")
        graph.state.close()


def _stdlib_like(root: Path) -> None:
    write_stdlib_like_tree(root, FILES, seed=1)


def _small_files_changed(names: list[tuple[str, str]], root: Path, image: Path, run: int) -> None:
    for directory, name in names:
        (root / directory / name).write_bytes(b"changed %d" % run)


def _stdlib_like_changed(root: Path, image: Path, run: int) -> None:
    # Files listed in the image, not the container: listing the container's directories would
    # update their atimes, which a native diff then has to look at (drivebay bench lists its source tree).
    files = sorted(p.relative_to(image) for p in image.rglob("*.py"))
    rewrite_files([root / p for p in random.Random(run).sample(files, CHANGED)], seed=run)


def _listed_then_changed(root: Path, image: Path, run: int) -> None:
    # As a build or `find` in the container would: every directory listed (a new atime each), then the change.
    for _ in os.walk(root):
        pass
    _stdlib_like_changed(root, image, run)


@dataclass(frozen=True)
class DiffCase:
    """An image, and the change made to a fresh container of it in each run."""

    describe: str
    fill: Callable[[Path], object]
    change: Callable[[Path, Path, int], object]


DIFF_CASES = {
    # drivebay bench's diff-vs-naive data: stdlib-like sizes (median 4 KiB), 1,000 random files rewritten.
    "stdlib": DiffCase("1,000 random files rewritten, stdlib-like sizes", _stdlib_like, _stdlib_like_changed),
    # The same after listing every directory of the container: each has an atime newer than the snapshot.
    "listed": DiffCase(
        "every directory listed, then 1,000 random files rewritten, stdlib-like sizes",
        _stdlib_like,
        _listed_then_changed,
    ),
    # Every 50th file: touches nearly every tree leaf, the worst case for a generation search.
    "spread": DiffCase(
        "every 50th small file rewritten",
        partial(_fill, files=FILES),
        partial(_small_files_changed, [(f"d{i // 500:03d}", f"f{i:05d}") for i in range(0, FILES, FILES // CHANGED)]),
    ),
    # Two directories rewritten, as a package upgrade does.
    "clustered": DiffCase(
        "two directories of small files rewritten",
        partial(_fill, files=FILES),
        partial(_small_files_changed, [(f"d{i // 500:03d}", f"f{i:05d}") for i in range(10_000, 10_000 + CHANGED)]),
    ),
}


def _diff_to(out: BinaryIO, action: Callable[[BinaryIO], object]) -> None:
    out.seek(0)
    out.truncate()
    action(out)


def bench_diff(runs: int, cases: list[str]) -> None:
    """Per run: a fresh container, the change, then the native diff and the naive one.

    Native first: the naive walk reads every directory, and the atime updates
    that makes would be found (and discarded) by a later native diff. The
    native diff runs right after the writes, so its first step (``BTRFS_IOC_SYNC``:
    write back the new data, commit) is timed apart as ``commit``; ``native``
    includes it. ``settled`` is a native diff of a second container whose
    writes were committed before timing, with nothing else pending (what the
    diff costs when the kernel's own 30-second commit has already run).
    """
    for name in cases:
        case = DIFF_CASES[name]
        with scratch_filesystem("btrfs", size_mb=4096) as mnt, tempfile.TemporaryFile() as out:
            graph = _open_driver(mnt)
            image = _image(graph, case.fill)
            commit, native, settled, naive = Series(), Series(), Series(), Series()
            committed: list[int] = []
            size = None
            for run in range(runs):
                settled_layer, pending = f"settled{run}", f"pending{run}"
                for layer in (settled_layer, pending):
                    graph.create_rw(layer, "image")
                    with graph.mounted(layer) as root:
                        case.change(root, image, run)
                        if layer == settled_layer:
                            # Commits the whole filesystem, so before the pending container is written.
                            btrfs.sync(root)
                with graph.mounted(pending) as root:
                    before = _device_bytes_written(mnt)
                    commit.time(partial(btrfs.sync, root))
                    committed.append(_device_bytes_written(mnt) - before)
                native.time(partial(_diff_to, out, partial(graph.diff, pending)))
                native.wall[-1] += commit.wall[-1]
                native.cpu[-1] += commit.cpu[-1]
                size = out.tell()
                # Reading the pending container's changed files for its tar updated their atimes.
                btrfs.sync(image)
                settled.time(partial(_diff_to, out, partial(graph.diff, settled_layer)))
                naive.time(partial(_diff_to, out, partial(graph.naive_diff, pending, "image")))
                assert out.tell() == size, "native and naive tars differ in size"
                assert graph.changes(pending) == graph.naive_changes(pending, "image"), "native changes differ"
            print(f"[{name}] {case.describe} on a {FILES}-file image, {runs} runs; tar {size} bytes")
            print(f"  commit first (BTRFS_IOC_SYNC): {commit.describe()}")
            print(f"    it wrote {statistics.median(committed) / 2**20:.1f} MiB (median) to the loop device")
            print(f"  native diff incl. commit:      {native.describe()}")
            print(f"  native diff, settled:          {settled.describe()}")
            print(f"  naive diff:                    {naive.describe()}")
            share = _median(commit.wall) / _median(native.wall)
            print(f"  native / naive: {native.ratio_to(naive)}; the commit is {share:.0%} of native wall")
            print(f"  settled / naive: {settled.ratio_to(naive)} (target <= 0.1x)")
            graph.state.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("tools", "create", "diff"))
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--case", choices=list(DIFF_CASES), action="append", help="diff only: data set (repeatable)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("benchmarks loop-mount btrfs: run as root", file=sys.stderr)
        return 1
    if args.what == "diff":
        bench_diff(args.runs, args.case or list(DIFF_CASES))
    else:
        {"tools": bench_tools, "create": bench_create}[args.what](args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
