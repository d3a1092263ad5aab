"""Benchmark of the local volume driver: create, first mount, extra users, last unmount, remove.

Run as root: ``python plugins/volumedriver_local/bench_local_volume.py [--rounds N]``

Every call goes through core's ``VolumeDriver`` facade, so each includes its ``drivebay.db`` transaction
(the refcounts). Prints one JSON object: milliseconds per operation for a plain volume and a tmpfs volume.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from drivebay.facades.volume import VolumeDriver
from drivebay.fs import mounts
from drivebay.loader import KINDS, load_driver
from drivebay.state import StateDB

KINDS_OF_VOLUME = {"plain": {}, "tmpfs": {"type": "tmpfs", "device": "tmpfs", "o": "size=16m"}}


def _ms(action: Callable[[], object], rounds: int) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        action()
    return round((time.perf_counter() - started) * 1000 / rounds, 3)


def bench(root: Path, rounds: int) -> dict[str, dict[str, float]]:
    state = StateDB.for_root(root)
    driver = VolumeDriver(load_driver(KINDS["volume"], "local"), root, state)
    results: dict[str, dict[str, float]] = {}
    try:
        for kind, options in KINDS_OF_VOLUME.items():
            names = [f"{kind}-{i}" for i in range(rounds)]
            it = iter(names)
            create = _ms(lambda: driver.create(next(it), options), rounds)
            it = iter(names)
            first_mount = _ms(lambda: driver.mount(next(it), "first"), rounds)
            it = iter(names)
            second_user = _ms(lambda: driver.mount(next(it), "second"), rounds)
            it = iter(names)
            _ms(lambda: driver.unmount(next(it), "second"), rounds)
            it = iter(names)
            last_unmount = _ms(lambda: driver.unmount(next(it), "first"), rounds)
            it = iter(names)
            remove = _ms(lambda: driver.remove(next(it)), rounds)
            results[kind] = {
                "create_ms": create,
                "first_mount_ms": first_mount,
                "another_user_ms": second_user,
                "last_unmount_ms": last_unmount,
                "remove_ms": remove,
            }
    finally:
        state.close()
        mounts.unmount_all_under(root)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="drivebay-bench-volume-"))
    try:
        print(json.dumps(bench(workdir, args.rounds), indent=2))
    finally:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
