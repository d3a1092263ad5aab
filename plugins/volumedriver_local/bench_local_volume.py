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

KINDS_OF_VOLUME: dict[str, dict[str, str]] = {
    "plain": {},
    "tmpfs": {"type": "tmpfs", "device": "tmpfs", "o": "size=16m"},
}


def _ms(names: list[str], action: Callable[[str], object]) -> float:
    """Milliseconds per call of ``action`` over ``names``."""
    started = time.perf_counter()
    for name in names:
        action(name)
    return round((time.perf_counter() - started) * 1000 / len(names), 3)


def bench_kind(driver: VolumeDriver, kind: str, options: dict[str, str], rounds: int) -> dict[str, float]:
    names = [f"{kind}-{i}" for i in range(rounds)]
    results = {
        "create_ms": _ms(names, lambda name: driver.create(name, options)),
        "first_mount_ms": _ms(names, lambda name: driver.mount(name, "first")),
        "another_user_ms": _ms(names, lambda name: driver.mount(name, "second")),
    }
    _ms(names, lambda name: driver.unmount(name, "second"))
    results["last_unmount_ms"] = _ms(names, lambda name: driver.unmount(name, "first"))
    results["remove_ms"] = _ms(names, driver.remove)
    return results


def bench(root: Path, rounds: int) -> dict[str, dict[str, float]]:
    state = StateDB.for_root(root)
    driver = VolumeDriver(load_driver(KINDS["volume"], "local"), root, state)
    try:
        results = {kind: bench_kind(driver, kind, options, rounds) for kind, options in KINDS_OF_VOLUME.items()}
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
