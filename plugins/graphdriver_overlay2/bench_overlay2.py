"""Benchmark overlay2 against its references, measured in the same run, as issue 5 asks (run as root).

- ``graph mount`` of a 128-layer chain (core's facade ``get``) vs the bare
  mount of the same overlay in this process: the new-API call sequence with
  the same options, and mount(2) with the same relative paths. Target <= 2x.
- ``graph diff`` and ``graph changes`` after rewriting 1,000 files of a
  50,000-file image vs core's naive diff of the same layer. Target <= 0.1x.
- ``graph apply`` of the 50,000-file layer vs ``tar -xf`` to the same filesystem. Target <= 1.3x.

    python plugins/graphdriver_overlay2/bench_overlay2.py [--dir /var/tmp] [--repeat 25]

Everything is made in a fresh directory under ``--dir`` and removed at the end.
"""

from __future__ import annotations

import argparse
import ctypes
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
from drivebay.fs.newmount import FsContext
from drivebay.loader import KINDS, load_driver
from drivebay.state import StateDB

_libc = ctypes.CDLL("libc.so.6", use_errno=True)


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


def bench_mount(driver: GraphDriver, repeat: int) -> dict[str, float]:
    parent = None
    for level in range(128):
        layer_id = f"img{level}"
        driver.create(layer_id, parent)
        (driver.home / layer_id / "diff" / f"file{level}").write_text(str(level))
        parent = layer_id
    driver.create_rw("top", parent)
    home, merged = driver.home, driver.home / "top" / "merged"
    lowers = (home / "top" / "lower").read_text().split(":")
    assert len(lowers) == 128

    facade_get = median_seconds(lambda: driver.get("top"), repeat, lambda: driver.put("top"))
    hook_get = median_seconds(
        lambda: driver.loaded.hook.graph_get(layer_id="top"),
        repeat,
        lambda: driver.loaded.hook.graph_put(layer_id="top"),
    )

    def bare_new_api() -> None:
        with FsContext("overlay") as ctx:
            ctx.set_string("index", "off")
            for lower in lowers:
                ctx.set_string("lowerdir+", str(home / lower))
            ctx.set_string("upperdir", str(home / "top" / "diff"))
            ctx.set_string("workdir", str(home / "top" / "work"))
            ctx.mount(merged)

    data = f"index=off,lowerdir={':'.join(lowers)},upperdir=top/diff,workdir=top/work".encode()

    def bare_mount2() -> None:
        if _libc.mount(b"overlay", os.fsencode(merged), b"overlay", 0, data) != 0:
            raise OSError(ctypes.get_errno(), "mount(2) failed")

    new_api = median_seconds(bare_new_api, repeat, lambda: mounts.unmount(merged))
    cwd = os.getcwd()
    os.chdir(home)  # the bare mount(2) reference uses the same relative paths; this script has no threads
    try:
        mount2 = median_seconds(bare_mount2, repeat, lambda: mounts.unmount(merged))
    finally:
        os.chdir(cwd)
    return {
        "graph mount (facade get)": facade_get,
        "driver graph_get hook": hook_get,
        "bare new mount API": new_api,
        "bare mount(2)": mount2,
    }


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
    parser.add_argument("--repeat", type=int, default=25, help="runs per mount measurement (median kept)")
    parser.add_argument("--files", type=int, default=50_000)
    parser.add_argument("--changed", type=int, default=1_000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-overlay2-", dir=args.dir))
    driver = open_driver(workdir / "root")
    backing = dict(driver.status())["Backing Filesystem"]
    try:
        mount_times = bench_mount(driver, args.repeat)
        diff_times = bench_diff(driver, workdir, args.files, args.changed, max(5, args.repeat // 5))
    finally:
        driver.cleanup()
        mounts.unmount_all_under(workdir)
        shutil.rmtree(workdir)
    print(f"backing fs: {backing}, kernel {os.uname().release}")
    for name, seconds in {**mount_times, **diff_times}.items():
        print(f"  {name:28s} {seconds * 1000:10.2f} ms" if name != "files" else f"  {name:28s} {int(seconds):10d}")
    get, bare = mount_times["graph mount (facade get)"], mount_times["bare new mount API"]
    print(f"graph mount / bare new-API mount : {get / bare:.2f}x (target <= 2x)")
    print(f"graph mount / bare mount(2)      : {get / mount_times['bare mount(2)']:.2f}x")
    print(f"driver hook / bare new-API mount : {mount_times['driver graph_get hook'] / bare:.2f}x")
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
