"""Benchmark: what Docker's plugin protocol costs against calling the driver in-process.

``python -m drivebay.dockerplugin.overhead --workdir DIR`` (as root) measures,
for one graph driver (overlay2 by default) on DIR's filesystem:

- ``get``/``put``: a mount reference taken and released through core's facade,
  in-process and through ``docker-plugin:NAME`` (HTTP over a unix socket to
  the same driver served by a ``drivebay plugin serve`` process);
- ``apply_diff`` of a layer of 50,000 files, the same both ways;
- with ``--docker-load``: ``docker load`` of an image of that layer into a
  dockerd whose storage driver is the served plugin, against dockerd's
  built-in overlay2 on the same filesystem.

Each figure is the median of ``--repeat`` runs; the output is one JSON object.
Nothing here runs in the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from drivebay import archive
from drivebay.bench.datagen import write_stdlib_like_tree
from drivebay.config import Config
from drivebay.dockerplugin.discovery import SOCKETS_DIR
from drivebay.facades.graph import GraphDriver
from drivebay.fs.mounts import mounts_under, unmount
from drivebay.selection import open_graph_driver
from drivebay.state import StateDB

SEED = 11


def median_seconds(action: Callable[[], object], repeat: int, before: Callable[[], object] | None = None) -> float:
    """The median wall time of ``action`` over ``repeat`` runs; ``before`` runs untimed ahead of each."""
    times = []
    for _ in range(repeat):
        if before is not None:
            before()
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@contextmanager
def served_graph(driver: str, root: Path) -> Iterator[str]:
    """Serve ``driver`` on ``root`` from a ``drivebay plugin serve`` process, as Docker users run it.

    The socket is where dockerd and drivebay look; yields the plugin's name.
    """
    name = f"dbbench-{os.getpid()}"
    socket = SOCKETS_DIR / f"{name}.sock"
    command = [sys.executable, "-m", "drivebay.cli.main", "--root", str(root), "plugin", "serve",
               "--kind", "graph", "--driver", driver, "--name", name, "--socket", str(socket)]
    server = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not socket.exists():
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"drivebay plugin serve did not start: {' '.join(command)}")
            time.sleep(0.05)
        yield name
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)


def _facade(root: Path, driver: str) -> tuple[GraphDriver, StateDB]:
    state = StateDB.for_root(root)
    return open_graph_driver(Config(root=root, storage_driver=driver), state), state


def measure_get_put(graph: GraphDriver, count: int) -> float:
    graph.create("getput", None)
    try:
        start = time.perf_counter()
        for _ in range(count):
            graph.get("getput")
            graph.put("getput")
        return (time.perf_counter() - start) / count
    finally:
        graph.remove("getput")


def measure_apply(graph: GraphDriver, tar: Path, repeat: int) -> float:
    def apply() -> None:
        with open(tar, "rb") as stream:
            graph.create_from_tar("applied", None, stream)

    def clear() -> None:
        if graph.exists("applied"):
            graph.remove("applied")

    try:
        return median_seconds(apply, repeat, before=clear)
    finally:
        clear()


def make_layer_tar(workdir: Path, files: int) -> Path:
    tree = workdir / "tree"
    tar = workdir / f"layer-{files}.tar"
    if not tar.exists():
        write_stdlib_like_tree(tree, files, SEED)
        with open(tar, "wb") as out:
            archive.write_tree_tar(out, tree, archive.WhiteoutFormat.DELETE)
        shutil.rmtree(tree)
    return tar


def _unmount_under(path: Path) -> None:
    for entry in mounts_under(path):
        unmount(entry.mount_point, lazy=True)


class Dockerd:
    """A dockerd on its own data root under ``base``, stopped by its PID."""

    def __init__(self, base: Path, *flags: str) -> None:
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.socket = base / "d.sock"
        command = ["dockerd", "--data-root", str(base / "data"), "--exec-root", str(base / "x"),
                   "--pidfile", str(base / "pid"), "-H", f"unix://{self.socket}", "--iptables=false",
                   "--ip6tables=false", "--ip-masq=false", "--bridge=none", *flags]
        with open(base / "log", "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while self.docker("version", check=False).returncode != 0:
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"dockerd did not start; see {base / 'log'}")
            time.sleep(0.2)

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        client = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
        return subprocess.run([client, "-H", f"unix://{self.socket}", *args], capture_output=True, check=check)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(120)
        _unmount_under(self.base)


def measure_docker_load(workdir: Path, tar: Path, driver: str, repeat: int) -> dict[str, float]:
    """``docker load`` of an image holding ``tar``: built-in overlay2 against the served ``driver``."""
    image = workdir / "image.tar"
    builtin = Dockerd(Path(f"/tmp/dbb-{os.getpid()}-a"), "--storage-driver", "overlay2")
    try:
        builtin.docker("import", str(tar), "bench:1")
        builtin.docker("save", "-o", str(image), "bench:1")

        def load_builtin() -> None:
            builtin.docker("load", "-i", str(image))

        def clear_builtin() -> None:
            builtin.docker("rmi", "bench:1", check=False)

        seconds_builtin = median_seconds(load_builtin, repeat, before=clear_builtin)
    finally:
        builtin.stop()
        shutil.rmtree(builtin.base)
    with served_graph(driver, workdir / "served") as plugin:
        engine = Dockerd(Path(f"/tmp/dbb-{os.getpid()}-b"), "--experimental", "--storage-driver", plugin)
        try:
            def load_plugin() -> None:
                engine.docker("load", "-i", str(image))

            def clear_plugin() -> None:
                engine.docker("rmi", "bench:1", check=False)

            seconds_plugin = median_seconds(load_plugin, repeat, before=clear_plugin)
        finally:
            engine.stop()
            shutil.rmtree(engine.base)
    _unmount_under(workdir / "served")
    return {
        "builtin_overlay2_s": seconds_builtin, "plugin_s": seconds_plugin, "ratio": seconds_plugin / seconds_builtin
    }


def run(workdir: Path, driver: str, files: int, repeat: int, get_put: int, docker_load: bool) -> dict[str, object]:
    workdir.mkdir(parents=True, exist_ok=True)
    tar = make_layer_tar(workdir, files)
    local, local_state = _facade(workdir / "local", driver)
    try:
        local_get_put = measure_get_put(local, get_put)
        local_apply = measure_apply(local, tar, repeat)
    finally:
        local.cleanup()
        local_state.close()
    with served_graph(driver, workdir / "served") as plugin:
        remote, remote_state = _facade(workdir / "client", f"docker-plugin:{plugin}")
        try:
            remote_get_put = measure_get_put(remote, get_put)
            remote_apply = measure_apply(remote, tar, repeat)
        finally:
            remote.cleanup()
            remote_state.close()
    _unmount_under(workdir)
    result: dict[str, object] = {
        "driver": driver,
        "get_put": {"in_process_ms": local_get_put * 1e3, "http_ms": remote_get_put * 1e3,
                    "ratio": remote_get_put / local_get_put},
        "apply_diff": {"files": files, "tar_bytes": tar.stat().st_size, "in_process_s": local_apply,
                       "http_s": remote_apply, "ratio": remote_apply / local_apply},
    }
    if docker_load:
        result["docker_load"] = measure_docker_load(workdir, tar, driver, repeat)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workdir", type=Path, required=True, help="where roots and data go (its filesystem is used)")
    parser.add_argument("--driver", default="overlay2")
    parser.add_argument("--files", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--get-put", type=int, default=1000, help="get/put pairs to time")
    parser.add_argument("--docker-load", action="store_true", help="also time docker load (needs dockerd)")
    args = parser.parse_args(argv)
    result = run(args.workdir, args.driver, args.files, args.repeat, args.get_put, args.docker_load)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
