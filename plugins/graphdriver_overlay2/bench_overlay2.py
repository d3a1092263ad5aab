"""Benchmark overlay2 against its references, measured in the same run, as issue 5 asks (run as root).

- ``graph mount`` of a 128-layer chain (core's facade ``get``: refcount in SQLite,
  pluggy, the driver, the mount) vs the bare ``mount(2)`` system call with the
  same options: the driver's own ``graph_mounts`` description with its paths made
  relative to the home, as the driver mounts them, in the home as working
  directory. Both run in this process, interleaved in rotating order with the
  other cases below, each undone untimed (``put``, ``umount``); medians of wall
  time and of this thread's CPU time (user + system). Target <= 2x.
  Also timed: the driver's ``graph_get`` hook alone, core bench's reference
  (``prepare_mount``'s mount of the driver's description, parsed once), and the
  new mount API.
- ``graph diff`` and ``graph changes`` after rewriting 1,000 files of a
  50,000-file image vs core's naive diff of the same layer. Target <= 0.1x.
- ``graph apply`` of the 50,000-file layer vs ``tar -xf`` to the same filesystem. Target <= 1.3x.

    python plugins/graphdriver_overlay2/bench_overlay2.py [--dir /var/tmp] [--cycles 100] [--mount-only]

Everything is made in a fresh directory under ``--dir`` and removed at the end.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import io
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from drivebay import archive
from drivebay.bench.datagen import rewrite_files, write_stdlib_like_tree
from drivebay.facades.graph import GraphDriver
from drivebay.fs import mounts
from drivebay.fs.mountspec import prepare_mount
from drivebay.fs.newmount import FsContext
from drivebay.loader import KINDS, load_driver
from drivebay.state import StateDB

_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
DEPTH = 128


def sync_filesystem(path: Path) -> None:
    """Flush the filesystem holding ``path`` only (os.sync would wait for every other disk's writers too)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _libc.syncfs(fd) != 0:
            raise OSError(ctypes.get_errno(), f"syncfs {path} failed")
    finally:
        os.close(fd)


def median_seconds(action: Callable[[], object], repeat: int, after: Callable[[], object] | None = None) -> float:
    """Median wall time of ``action``; ``after`` (not timed) undoes it between runs."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
        if after is not None:
            after()
    return statistics.median(times)


def open_driver(root: Path) -> GraphDriver:
    loaded = load_driver(KINDS["graph"], "overlay2")
    return GraphDriver(loaded, root / "overlay2", StateDB.for_root(root), {})


Case = tuple[Callable[[], object], Callable[[], object]]
"""A timed action and the untimed undo that follows it."""


def interleaved(cases: dict[str, Case], cycles: int, reference: str) -> dict[str, dict[str, float]]:
    """Median wall and thread-CPU seconds of each case's action; its undo runs untimed after it.

    Every cycle runs every case once, starting one case later than the cycle
    before, so load from other processes and cache state fall on all alike.
    ``paired`` is the median, over cycles, of the case's CPU time over the
    ``reference`` case's in the same cycle: it follows load that drifts during the run.
    """
    names = list(cases)
    wall: dict[str, list[int]] = {name: [] for name in names}
    cpu: dict[str, list[int]] = {name: [] for name in names}
    for cycle in range(cycles):
        for name in names[cycle % len(names) :] + names[: cycle % len(names)]:
            action, undo = cases[name]
            cpu0, wall0 = time.thread_time_ns(), time.perf_counter_ns()
            action()
            wall1, cpu1 = time.perf_counter_ns(), time.thread_time_ns()
            undo()
            wall[name].append(wall1 - wall0)
            cpu[name].append(cpu1 - cpu0)
    return {
        name: {
            "wall": statistics.median(wall[name]) / 1e9,
            "cpu": statistics.median(cpu[name]) / 1e9,
            "paired": statistics.median(ours / theirs for ours, theirs in zip(cpu[name], cpu[reference], strict=True)),
        }
        for name in names
    }


def overlay_options(merged: Path) -> str:
    """The overlay's options as the kernel shows them in the mount table (to check two mounts are alike)."""
    (entry,) = [e for e in mounts.mount_table() if e.mount_point == merged]
    return entry.super_options


def bench_mount(driver: GraphDriver, cycles: int) -> dict[str, dict[str, float]]:
    parent = None
    for level in range(DEPTH):
        layer_id = f"img{level}"
        driver.create(layer_id, parent)
        (driver.home / layer_id / "diff" / f"file{level}").write_text(str(level))
        parent = layer_id
    driver.create_rw("top", parent)
    home, merged = driver.home, driver.home / "top" / "merged"
    (spec,) = driver.mounts("top").mounts
    # The driver mounts its description's options with paths relative to its home: the bare reference does too.
    data = ",".join(option.replace(f"{home}/", "") for option in spec.options)
    assert len(data) < PAGE_SIZE and data.count(":l/") == DEPTH - 1, data[:200]
    data_bytes, target = data.encode(), os.fsencode(merged)
    lowers = [lower.removeprefix(f"{home}/") for lower in data.split("lowerdir=")[1].split(",")[0].split(":")]

    def bare_mount2() -> None:
        if _libc.mount(b"overlay", target, b"overlay", 0, data_bytes) != 0:
            raise OSError(ctypes.get_errno(), "bare mount(2) failed")

    def bare_new_api() -> None:
        with FsContext("overlay") as ctx:
            ctx.set_string("index", "off")
            for lower in lowers:
                ctx.set_string("lowerdir+", lower)
            ctx.set_string("upperdir", "top/diff")
            ctx.set_string("workdir", "top/work")
            ctx.mount(merged)

    def unmount() -> None:
        mounts.unmount(merged)

    hook = driver.loaded.hook
    prepared = functools.partial(prepare_mount(spec), merged)
    cases: dict[str, Case] = {
        "graph mount (facade get)": (lambda: driver.get("top"), lambda: driver.put("top")),
        "driver graph_get hook": (lambda: hook.graph_get(layer_id="top"), lambda: hook.graph_put(layer_id="top")),
        "bare mount(2)": (bare_mount2, unmount),
        "prepare_mount(spec), mount only (core bench)": (prepared, unmount),
        "bare new mount API": (bare_new_api, unmount),
    }
    # The bare calls resolve the relative paths in the home; the driver changes there (this thread only) itself.
    with mounts.thread_working_directory(home):
        # The first mount of an empty upper dir stores overlay's uuid xattr and shows uuid=on; later ones don't.
        driver.get("top")
        driver.put("top")
        driver.get("top")
        by_driver = overlay_options(merged)
        driver.put("top")
        bare_mount2()
        by_bare = overlay_options(merged)
        unmount()
        assert by_driver == by_bare, f"the driver's mount differs from the bare one: {by_driver} vs {by_bare}"
        return interleaved(cases, cycles, reference="bare mount(2)")


def bench_diff(driver: GraphDriver, workdir: Path, files: int, changed: int, repeat: int) -> dict[str, float]:
    driver.create("image")
    stats = write_stdlib_like_tree(driver.home / "image" / "diff", files, seed=5)
    driver.create_rw("c1", "image")
    paths = sorted(p for p in (driver.home / "image" / "diff").rglob("*") if p.is_file())
    picked = random.Random(7).sample(paths, changed)
    root = driver.get("c1")
    rewrite_files([root / p.relative_to(driver.home / "image" / "diff") for p in picked], seed=9)
    parent_root = driver.get("image")
    sync_filesystem(driver.home)

    def native_diff() -> None:
        driver.diff("c1", io.BytesIO())

    def naive_diff() -> None:
        archive.write_changes_tar(io.BytesIO(), root, archive.naive_changes(root, parent_root))

    assert len(driver.changes("c1")) >= changed
    assert driver.changes("c1") == driver.naive_changes("c1", "image")
    results = {
        "graph diff (native)": median_seconds(native_diff, repeat),
        "naive diff": median_seconds(naive_diff, repeat),
        "graph changes (native)": median_seconds(lambda: driver.changes("c1"), repeat),
        "naive changes": median_seconds(lambda: archive.naive_changes(root, parent_root), repeat),
        "files": float(stats.files),
    }
    tar_path = workdir / "image.tar"
    subprocess.run(
        ["tar", "--sort=name", "-C", str(driver.home / "image" / "diff"), "-cf", str(tar_path), "."], check=True
    )
    driver.put("c1")
    driver.put("image")

    def apply() -> None:
        with open(tar_path, "rb") as f:
            driver.create_from_tar("applied", None, f)
        sync_filesystem(driver.home)

    def tar_x() -> None:
        target = driver.home / "tar-x"
        target.mkdir()
        subprocess.run(["tar", "-xf", str(tar_path), "-C", str(target)], check=True)
        sync_filesystem(driver.home)

    results["graph apply"] = median_seconds(apply, 3, lambda: driver.remove("applied"))
    results["tar -xf"] = median_seconds(tar_x, 3, lambda: shutil.rmtree(driver.home / "tar-x"))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"), help="where to make the scratch root")
    parser.add_argument("--cycles", type=int, default=100, help="interleaved mount cycles (medians kept)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per diff and changes measurement")
    parser.add_argument("--files", type=int, default=50_000)
    parser.add_argument("--changed", type=int, default=1_000)
    parser.add_argument("--mount-only", action="store_true", help="only the graph mount measurement")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-overlay2-", dir=args.dir))
    driver = open_driver(workdir / "root")
    backing = dict(driver.status())["Backing Filesystem"]
    load_before = os.getloadavg()
    try:
        mount_times = bench_mount(driver, args.cycles)
        diff_times = {} if args.mount_only else bench_diff(driver, workdir, args.files, args.changed, args.repeat)
    finally:
        driver.cleanup()
        mounts.unmount_all_under(workdir)
        shutil.rmtree(workdir)
    load_after = os.getloadavg()
    print(f"backing fs: {backing}, kernel {os.uname().release}, {os.cpu_count()} CPUs")
    print(f"load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    print(f"graph mount of a {DEPTH}-layer chain, {args.cycles} interleaved cycles (medians):")
    bare = mount_times["bare mount(2)"]
    print(f"  {'':32s} {'wall ms':>9s} {'cpu ms':>9s} {'wall/bare':>10s} {'cpu/bare':>9s} {'paired cpu':>11s}")
    for name, timing in mount_times.items():
        print(
            f"  {name:32s} {timing['wall'] * 1000:9.3f} {timing['cpu'] * 1000:9.3f} "
            f"{timing['wall'] / bare['wall']:9.2f}x {timing['cpu'] / bare['cpu']:8.2f}x {timing['paired']:10.2f}x"
        )
    print("  target: graph mount <= 2x the bare mount(2)")
    if not diff_times:
        return
    for name, seconds in diff_times.items():
        print(f"  {name:28s} {seconds * 1000:10.2f} ms" if name != "files" else f"  {name:28s} {int(seconds):10d}")
    print(
        f"graph diff / naive diff          : {diff_times['graph diff (native)'] / diff_times['naive diff']:.3f}x"
        " (target <= 0.1x)"
    )
    print(
        f"graph changes / naive changes    : "
        f"{diff_times['graph changes (native)'] / diff_times['naive changes']:.3f}x (target <= 0.1x)"
    )
    print(
        f"graph apply / tar -xf            : {diff_times['graph apply'] / diff_times['tar -xf']:.2f}x (target <= 1.3x)"
    )


if __name__ == "__main__":
    main()
