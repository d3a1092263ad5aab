"""Helpers of the snapshotter tests: served graph drivers, a gRPC client, a private containerd.

Every driver gets its own root in a temporary directory (btrfs on a loop-mounted
btrfs); whatever is mounted below those directories is unmounted at the end,
failures included.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from drivebay.errors import DriverNotSupported
from drivebay.facades.graph import GraphDriver
from drivebay.fs.loopfs import scratch_filesystem
from drivebay.fs.mounts import unmount_all_under
from drivebay.loader import KINDS, installed_drivers, load_driver
from drivebay.selection import probe
from drivebay.state import StateDB

if TYPE_CHECKING:
    import grpc

    from drivebay.snapshotter.proto import snapshots_pb2_grpc
    from drivebay.snapshotter.snapshots import Snapshotter

IS_ROOT = os.geteuid() == 0
DRIVERS = ("overlay2", "vfs", "btrfs", "aufs")
"""Every built-in graph driver; each test skips those not installed or not supported here."""


def short_tempdir(prefix: str) -> Path:
    """A directory under /tmp: unix socket paths must stay under 108 bytes."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


@contextmanager
def driver_root(name: str) -> Iterator[Path]:
    """A fresh drivebay root where graph driver ``name`` works (btrfs: a loop-mounted btrfs); skips otherwise."""
    if not IS_ROOT:
        pytest.skip("graph drivers mount and chown: needs root")
    if name not in {d.name for d in installed_drivers(KINDS["graph"])}:
        pytest.skip(f"graph driver '{name}' is not installed (pip install drivebay-graphdriver-{name})")
    with ExitStack() as stack:
        if name == "btrfs":
            try:
                root = stack.enter_context(scratch_filesystem("btrfs", size_mb=256))
            except DriverNotSupported as exc:
                pytest.skip(f"no scratch btrfs: {exc}")
        else:
            root = short_tempdir(f"dbsnap-{name}-")
            stack.callback(shutil.rmtree, root, ignore_errors=True)
        stack.callback(unmount_all_under, root / name)
        reason = probe(load_driver(KINDS["graph"], name), root)
        if reason is not None:
            pytest.skip(f"graph driver '{name}' is not supported here: {reason}")
        yield root


def open_graph(name: str, root: Path) -> GraphDriver:
    return GraphDriver(load_driver(KINDS["graph"], name), root / name, StateDB.for_root(root), {})


@dataclass
class Served:
    """A graph driver served as a snapshotter on ``socket``, and a client stub talking to it."""

    name: str
    root: Path
    socket: Path
    snapshotter: Snapshotter
    stub: snapshots_pb2_grpc.SnapshotsStub
    _server: grpc.Server = field(repr=False)

    @property
    def graph(self) -> GraphDriver:
        return self.snapshotter.graph


@contextmanager
def serve(name: str, root: Path, socket: Path) -> Iterator[Served]:
    """Serve ``name`` on ``root`` in this process until the block ends."""
    import grpc

    from drivebay.snapshotter.proto import snapshots_pb2_grpc
    from drivebay.snapshotter.service import start_server
    from drivebay.snapshotter.snapshots import Snapshotter

    snapshotter = Snapshotter(open_graph(name, root))
    server = start_server(snapshotter, socket)
    channel = grpc.insecure_channel(f"unix://{socket}")
    try:
        yield Served(name, root, socket, snapshotter, snapshots_pb2_grpc.SnapshotsStub(channel), server)
    finally:
        channel.close()
        server.stop(grace=None).wait()
        snapshotter.graph.state.close()


# -- a private containerd ---------------------------------------------------

CONTAINERD_CONFIG = """\
version = 2
root = "{dir}/root"
state = "{dir}/state"
disabled_plugins = {disabled}

[grpc]
  address = "{dir}/containerd.sock"

[ttrpc]
  address = "{dir}/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{dir}/opt"

# Collect garbage when a test asks for it (a --sync removal), never because enough calls went by:
# a snapshot nothing references (ctr snapshots view labels none) would vanish mid-sequence.
[plugins."io.containerd.gc.v1.scheduler"]
  mutation_threshold = 1000000
{plugins}
[proxy_plugins]
{proxies}
"""
PROXY = """\
  [proxy_plugins.drivebay-{name}]
    type = "snapshot"
    address = "{socket}"
"""
CRI_PLUGIN = """
[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "{snapshotter}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{dir}/cni/bin"
    conf_dir = "{dir}/cni/conf"
"""
"""The CRI plugin as a Kubernetes node sets it, kept off the host's CNI files; its stream server is loopback only."""
WITHOUT_CRI = '["io.containerd.grpc.v1.cri"]'
"""CRI reads the host's CNI and kubelet paths; the tests that don't check CRI need none of it."""


@dataclass
class Containerd:
    """A containerd with its root, state, socket and config in ``directory``, serving ``snapshotters``."""

    directory: Path
    socket: Path
    snapshotters: dict[str, Served] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def ctr(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["ctr", "--address", str(self.socket), *args], capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def collect_garbage(self) -> None:
        """Run containerd's garbage collection now, so none is pending while a test runs."""
        lease = f"drivebay-test-{time.monotonic_ns()}"
        self.ctr("leases", "create", "--id", lease)
        self.ctr("leases", "delete", "--sync", lease)

    def served(self, name: str) -> Served:
        if name not in self.snapshotters:
            pytest.skip(self.skipped[name])
        return self.snapshotters[name]


def containerd_missing() -> str | None:
    if not IS_ROOT:
        return "containerd runs as root here"
    for binary in ("containerd", "ctr", "runc", "containerd-shim-runc-v2"):
        if shutil.which(binary) is None:
            return f"{binary} is not installed (apt-get install containerd runc)"
    return None


def _wait_for_socket(process: subprocess.Popen[bytes], socket: Path, log: Path) -> None:
    deadline = time.monotonic() + 30
    while not socket.exists():
        if process.poll() is not None:
            raise AssertionError(f"containerd exited with {process.returncode}: {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"containerd did not listen on {socket} within 30 s: {log.read_text()[-2000:]}")
        time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


@contextmanager
def run_containerd(
    directory: Path, served: dict[str, Served], plugins: str = "", disabled: str = WITHOUT_CRI
) -> Iterator[Containerd]:
    """Run containerd with everything in ``directory`` and ``served`` as proxy snapshotters ``drivebay-NAME``;
    stop it by its PID and unmount what it left below ``directory``. Skips where containerd cannot run.
    """
    reason = containerd_missing()
    if reason:
        pytest.skip(reason)
    proxies = "".join(PROXY.format(name=n, socket=s.socket) for n, s in served.items())
    config = directory / "config.toml"
    config.write_text(CONTAINERD_CONFIG.format(dir=directory, disabled=disabled, plugins=plugins, proxies=proxies))
    log = directory / "containerd.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            ["containerd", "--config", str(config)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        socket = directory / "containerd.sock"
        _wait_for_socket(process, socket, log)
        yield Containerd(directory, socket, dict(served))
    finally:
        _stop(process)
        unmount_all_under(directory)
