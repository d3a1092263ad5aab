"""How fast ``image load`` of a one-layer image with ~50,000 files is, against ``tar -xf`` of that layer (issue #4).

Run as root (it mounts scratch filesystems):
``.venv/bin/python bench/image_load_speed.py [--files 50000] [--runs 3] [--fs tmpfs ext4] [--driver vfs overlay2]``.

On each filesystem it writes a seeded stdlib-like tree, tars it as a layer
(drivebay's own layer writer) and saves that as a ``docker save`` archive
(drivebay's own ``image save`` writer). Then, interleaved within each run,
it times:

- ``tar -xf`` of the layer into an empty directory (the reference);
- ``image load`` in this process (opening the graph driver and the stores,
  then ``load_archive``) into a fresh root, for each driver; and once
  through the CLI (a new process: interpreter start and imports included),
  with the first driver;
- ``image save`` of the loaded image with the first driver, in this process:
  its layer rebuilt from the tar-split and the applied files, hashed and
  written as a ``docker save`` archive, against ``tar -cf`` of the same tree
  (the one ``tar -xf`` made) to a file on the same filesystem;
- the pieces of a load on their own: ``apply_layer_tar`` of the layer into a
  directory, writing its tar-split while hashing it (``split_plain``, what a
  load runs beside the apply) and sha256 alone.

It prints the median wall and CPU seconds of each and their ratios to
``tar -xf``, and the breakdown of the median load: wall and process CPU of
each step inside it (a step marked "thread" overlaps the apply).
``os.sync()`` runs before every timed step so that one step's writeback does
not land in the next one's time. Everything is unmounted at the end,
failures included.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivebay import archive
from drivebay.bench.datagen import write_stdlib_like_tree
from drivebay.bench.measure import Timing, timed
from drivebay.facades.graph import GraphDriver
from drivebay.fs.loopfs import scratch_filesystem
from drivebay.fs.mounts import unmount_all_under
from drivebay.layers import blobs, docker_archive, image_archive, images, open_stores, store, transfer
from drivebay.layers.image_archive import SavedImage, SavedLayer, TarSource
from drivebay.layers.progress import LoadProgress
from drivebay.loader import KINDS, load_driver
from drivebay.state import StateDB

HASH_CHUNK = 4 << 20
TAG = "bench/load:1"
STEPS: list[tuple[object, str, str]] = [
    (image_archive.ArchiveFile, "__init__", "index the outer tar"),
    (transfer, "read_archive_images", "read manifest and config"),
    (store.LayerStore, "claim", "claim the layer (SQLite)"),
    (store.LayerStore, "_apply", "create + apply (driver)"),
    (store, "split_plain", "tar-split + sha256 (thread)"),
    (store.LayerStore, "_finish", "move tar, mark ready (SQLite)"),
    (images.ImageStore, "register", "register the image (SQLite)"),
    (store.LayerStore, "release", "release the lease"),
]
"""The steps of a load that the breakdown times, where they live, and their labels."""
OPEN_STEP = "open the graph driver and stores"


@dataclass
class Breakdown:
    """Wall and CPU seconds per step of one load, and of the whole load.

    CPU is the whole process's, so a step's CPU includes whatever ran in other
    threads meanwhile (the apply runs in its own thread; keeping the tar in another).
    """

    wall: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    cpu: dict[str, float] = field(default_factory=lambda: defaultdict(float))


@contextmanager
def instrumented(into: Breakdown) -> Iterator[None]:
    """Time the functions named in :data:`STEPS` while the block runs (the originals come back afterwards)."""
    originals = []
    for owner, name, label in STEPS:
        original = getattr(owner, name, None)
        if original is None:
            continue
        originals.append((owner, name, original))

        def timed_step(*args: Any, _original: Callable[..., Any] = original, _label: str = label, **kw: Any) -> Any:
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return _original(*args, **kw)
            finally:
                into.wall[_label] += time.perf_counter() - wall
                into.cpu[_label] += time.process_time() - cpu

        setattr(owner, name, functools.wraps(original)(timed_step))
    try:
        yield
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


def open_graph(root: Path, driver: str) -> GraphDriver:
    loaded = load_driver(KINDS["graph"], driver)
    reason = loaded.hook.graph_probe(home=root / driver)
    if reason is not None:
        raise SystemExit(f"image_load_speed: graph driver '{driver}' is not supported here: {reason}")
    return GraphDriver(loaded, home=root / driver, state=StateDB.for_root(root), options={})


def load_once(archive_path: Path, root: Path, driver: str, into: Breakdown) -> Timing:
    """``image load`` of ``archive_path`` into the fresh ``root``, as ``drivebay image load`` does in-process."""
    opened: list[GraphDriver] = []

    def load() -> None:
        with instrumented(into):
            wall, cpu = time.perf_counter(), time.process_time()
            opened.append(open_graph(root, driver))
            stores = open_stores(root, opened[0].state, opened[0])
            into.wall[OPEN_STEP] += time.perf_counter() - wall
            into.cpu[OPEN_STEP] += time.process_time() - cpu
            transfer.load_archive(archive_path, stores.images, LoadProgress())

    try:
        return timed(load)
    finally:
        if opened:
            opened[0].cleanup()
            unmount_all_under(root)
            opened[0].state.close()


def save_once(root: Path, driver: str, dest: Path) -> Timing:
    """``image save`` of the image loaded into ``root`` to ``dest``, as ``drivebay image save`` does in-process."""
    graph = open_graph(root, driver)
    try:
        stores = open_stores(root, graph.state, graph)
        os.sync()
        return timed(lambda: transfer.save_images([TAG], dest, "docker", stores.images))
    finally:
        graph.cleanup()
        unmount_all_under(root)
        graph.state.close()


def sha256_file(path: Path) -> None:
    sha = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(HASH_CHUNK):
            sha.update(chunk)


def build_image(mnt: Path, files: int, seed: int) -> tuple[Path, Path, int]:
    """The layer tar and a ``docker save`` archive holding it as a one-layer image; and the layer's file count."""
    tree = mnt / "tree"
    stats = write_stdlib_like_tree(tree, files, seed)
    layer = mnt / "layer.tar"
    with open(layer, "wb") as out:
        archive.write_tree_tar(out, tree, archive.WhiteoutFormat.DELETE)
    shutil.rmtree(tree)
    sha = hashlib.sha256()
    with open(layer, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            sha.update(chunk)
    diff_id = "sha256:" + sha.hexdigest()
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
    ).encode()
    saved = SavedImage(
        id=store.sha256_digest(config),
        config=config,
        tags=(TAG,),
        layers=(SavedLayer(diff_id, diff_id, TarSource.file(layer)),),
    )
    image = mnt / "image.tar"
    with open(image, "wb") as out:
        docker_archive.write(out, [saved])
    return layer, image, stats.files


def fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir()
    return path


def synced(action: Callable[[], object]) -> Timing:
    os.sync()
    return timed(action)


@dataclass
class Series:
    timings: list[Timing] = field(default_factory=list)
    breakdowns: list[Breakdown] = field(default_factory=list)

    def median(self) -> Timing:
        return Timing(
            wall=statistics.median(t.wall for t in self.timings), cpu=statistics.median(t.cpu for t in self.timings)
        )

    def median_run(self) -> int:
        """The index of the run whose wall time is the median."""
        order = sorted(range(len(self.timings)), key=lambda i: self.timings[i].wall)
        return order[len(order) // 2]


def bench_filesystem(fstype: str, drivers: list[str], files: int, seed: int, runs: int) -> None:
    size_mb = 6144
    with scratch_filesystem(fstype, size_mb=size_mb) as mnt:
        layer, image, count = build_image(mnt, files, seed)
        print(
            f"\n== {fstype}: layer of {count} files, {layer.stat().st_size / 2**20:.0f} MiB; "
            f"archive {image.stat().st_size / 2**20:.0f} MiB",
            flush=True,
        )
        series: dict[str, Series] = defaultdict(Series)
        out = mnt / "out"
        kept = mnt / "kept.tarsplit"
        cli_root = mnt / "root-cli"

        saved = mnt / "saved.tar"

        def gnu_tar_create() -> None:
            subprocess.run(["tar", "--numeric-owner", "-C", str(out), "-cf", str(saved), "."], check=True)

        def gnu_tar() -> None:
            subprocess.run(["tar", "--numeric-owner", "-C", str(out), "-xf", str(layer)], check=True)

        def apply() -> None:
            with open(layer, "rb") as tar:
                archive.apply_layer_tar(tar, out, archive.WhiteoutFormat.DELETE)

        def cli_load() -> None:
            # As a user runs it: a new process, interpreter start and imports included.
            command = [sys.executable, "-m", "drivebay.cli.main", "--root", str(cli_root), "-s", drivers[0]]
            subprocess.run([*command, "image", "load", "-q", "-i", str(image)], check=True, stdout=subprocess.DEVNULL)

        def keep() -> None:
            with open(layer, "rb") as f:
                blobs.split_plain(blobs.FileRegion(f.fileno(), 0, layer.stat().st_size), kept)

        for run in range(runs):
            fresh(out)
            series["tar -xf"].timings.append(synced(gnu_tar))
            for driver in drivers:
                root = fresh(mnt / f"root-{driver}")
                breakdown = Breakdown()
                os.sync()
                series[f"image load ({driver})"].timings.append(load_once(image, root, driver, breakdown))
                series[f"image load ({driver})"].breakdowns.append(breakdown)
                if driver == drivers[0]:
                    series["tar -cf (save's reference)"].timings.append(synced(gnu_tar_create))
                    saved.unlink()
                    series[f"image save ({driver})"].timings.append(save_once(root, driver, saved))
                    saved.unlink()
                shutil.rmtree(root)
            fresh(cli_root)
            series[f"drivebay image load, CLI ({drivers[0]})"].timings.append(synced(cli_load))
            unmount_all_under(cli_root)
            shutil.rmtree(cli_root)
            fresh(out)
            series["apply_layer_tar alone"].timings.append(synced(apply))
            series["tar-split + sha256 alone (split_plain)"].timings.append(synced(keep))
            kept.unlink()
            series["sha256 alone"].timings.append(synced(lambda: sha256_file(layer)))
            print(f"  run {run + 1}/{runs} done, load average {os.getloadavg()[0]:.1f}", flush=True)
        shutil.rmtree(out)
        reference = series["tar -xf"].median()
        for label, found in series.items():
            if label == f"image save ({drivers[0]})":
                save, tar_create = found.median(), series["tar -cf (save's reference)"].median()
                print(
                    f"  image save ({drivers[0]}) / tar -cf: wall {save.wall / tar_create.wall:.2f}x, "
                    f"CPU {save.cpu / tar_create.cpu:.2f}x"
                )
            got = found.median()
            print(
                f"  {label:34s} wall {got.wall:6.2f}s = {got.wall / reference.wall:4.2f}x   "
                f"CPU {got.cpu:6.2f}s = {got.cpu / reference.cpu:4.2f}x   "
                f"(walls {', '.join(f'{t.wall:.2f}' for t in found.timings)})"
            )
        for driver in drivers:
            found = series[f"image load ({driver})"]
            load, apply_alone = found.median(), series["apply_layer_tar alone"].median()
            print(
                f"  image load ({driver}) / apply_layer_tar alone: wall {load.wall / apply_alone.wall:.2f}x, "
                f"CPU {load.cpu / apply_alone.cpu:.2f}x"
            )
            median = found.median_run()
            breakdown, total = found.breakdowns[median], found.timings[median]
            print(f"  breakdown of the median load ({driver}), wall / process CPU:")
            for label, seconds in breakdown.wall.items():
                print(f"    {label:34s} {seconds:6.3f}s / {breakdown.cpu[label]:6.3f}s")
            serial = sum(seconds for label, seconds in breakdown.wall.items() if "thread" not in label)
            print(f"    {'the rest':34s} {total.wall - serial:6.3f}s")
            print(f"    {'whole load':34s} {total.wall:6.3f}s / {total.cpu:6.3f}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--files", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--fs", nargs="+", default=["tmpfs", "ext4"], help="filesystems to run on")
    parser.add_argument("--driver", nargs="+", default=["vfs", "overlay2"], help="graph drivers to load with")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("image_load_speed: needs root to mount its scratch filesystems", file=sys.stderr)
        return 1
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for fstype in args.fs:
        bench_filesystem(fstype, args.driver, args.files, args.seed, args.runs)
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
