"""Fixtures and helpers of the Docker plugin tests: served drivers, a real dockerd, a busybox image.

Every fixture cleans up what it made, failures included: plugin servers are
closed (their sockets removed), dockerd is stopped by its PID, and whatever
is still mounted under the test's directory is unmounted.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from drivebay.config import Config
from drivebay.dockerplugin.client import PluginClient
from drivebay.dockerplugin.discovery import SOCKETS_DIR, PluginAddress
from drivebay.dockerplugin.server import PluginServer
from drivebay.dockerplugin.serving import open_endpoint_set
from drivebay.errors import MountError
from drivebay.fs.mounts import mounts_under, unmount
from drivebay.loader import KINDS, installed_drivers, suggested_distribution
from drivebay.state import StateDB

IS_ROOT = os.geteuid() == 0
DOCKER_STOP_SECONDS = 60
DOCKER_START_SECONDS = 90
BUSYBOX = Path("/bin/busybox")
APPLETS = (
    "sh", "echo", "cat", "ls", "touch", "mkdir", "rm", "head", "tr", "sleep", "ip", "ping", "printf", "wc", "seq",
    "ifconfig", "route", "true", "false", "test", "env",
)

needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (mounts, /run/docker/plugins, dockerd)")


def unique_plugin_name() -> str:
    """A plugin name no other test (or a real plugin) uses."""
    return f"dbtest-{secrets.token_hex(5)}"


def unmount_everything_under(path: Path) -> None:
    """Unmount every mount below ``path``, deepest first; lazily when one is still busy."""
    for entry in mounts_under(path):
        try:
            unmount(entry.mount_point)
        except MountError:
            unmount(entry.mount_point, lazy=True)


@dataclass
class ServedPlugin:
    """A drivebay driver served on ``socket``; ``client`` talks to it."""

    name: str
    socket: Path
    root: Path
    server: PluginServer
    client: PluginClient

    @property
    def driver_name(self) -> str:
        """The name that makes drivebay use this plugin (``docker-plugin:NAME``)."""
        return f"docker-plugin:{self.name}"


@dataclass
class PluginFactory:
    """Starts served plugins for one test and stops them all at the end."""

    base: Path
    served: list[ServedPlugin] = field(default_factory=list)
    states: list[StateDB] = field(default_factory=list)

    def __call__(
        self, *drivers: tuple[str, str], discoverable: bool = False, root: Path | None = None
    ) -> ServedPlugin:
        """Serve ``(kind, driver)`` pairs on one socket with a fresh root.

        ``discoverable`` puts the socket in ``/run/docker/plugins`` under a
        unique name, where dockerd and drivebay's discovery look.
        """
        for kind, driver in drivers:
            if driver not in {d.name for d in installed_drivers(KINDS[kind])}:
                missing = suggested_distribution(KINDS[kind], driver)
                pytest.skip(f"{kind} driver '{driver}' is not installed: pip install {missing}")
        name = unique_plugin_name()
        root = root or self.base / f"{name}-root"
        state = StateDB.for_root(root)
        self.states.append(state)
        config = Config(root=root)
        sets = [open_endpoint_set(kind, driver, config, state) for kind, driver in drivers]
        socket = (SOCKETS_DIR if discoverable else self.base) / f"{name}.sock"
        server = PluginServer(socket, sets)
        server.start()
        client = PluginClient(name, address=PluginAddress(name, f"unix://{socket}", socket), retry_seconds=0)
        plugin = ServedPlugin(name, socket, root, server, client)
        self.served.append(plugin)
        return plugin

    def close(self) -> None:
        for plugin in reversed(self.served):
            plugin.client.close()
            plugin.server.close()
        for state in self.states:
            state.close()


@pytest.fixture
def serve_plugin(tmp_path: Path) -> Iterator[PluginFactory]:
    """``serve_plugin(("volume", "local"), ...)`` serves drivers on a fresh root under ``tmp_path``."""
    factory = PluginFactory(tmp_path)
    try:
        yield factory
    finally:
        try:
            factory.close()
        finally:
            unmount_everything_under(tmp_path)


# -- a real Docker engine ---------------------------------------------------------------


def docker_client_binary() -> str | None:
    """Debian's docker CLI (from docker.io) first, else any on PATH."""
    if Path("/usr/bin/docker").exists():
        return "/usr/bin/docker"
    return shutil.which("docker")


@dataclass
class DockerEngine:
    """A dockerd of the test's own: data root, exec root, socket and PID file under ``base``."""

    base: Path
    client: str
    process: subprocess.Popen[bytes] | None = None
    netns: str | None = None

    @property
    def socket(self) -> Path:
        return self.base / "docker.sock"

    @property
    def log(self) -> Path:
        return self.base / "dockerd.log"

    def _prefix(self) -> list[str]:
        # nsenter, not 'ip netns exec': that remounts /sys, and dockerd then finds no cgroups.
        return ["nsenter", f"--net=/run/netns/{self.netns}"] if self.netns else []

    def start(self, *extra: str) -> None:
        command = [
            *self._prefix(),
            "dockerd",
            "--data-root", str(self.base / "data"),
            "--exec-root", str(self.base / "exec"),
            "--pidfile", str(self.base / "dockerd.pid"),
            "-H", f"unix://{self.socket}",
            "--iptables=false", "--ip6tables=false", "--ip-masq=false", "--bridge=none",
            *extra,
        ]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + DOCKER_START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self.socket.exists() and self.docker("version", check=False).returncode == 0:
                return
            time.sleep(0.2)
        reason = self.tail()
        self.stop()
        pytest.skip(f"dockerd cannot start on this machine: {reason}")

    def tail(self, lines: int = 5) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:])

    def docker(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run the docker CLI against this engine; ``check`` fails the test with dockerd's log on an error."""
        result = subprocess.run(
            [self.client, "-H", f"unix://{self.socket}", *args],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}\n"
                f"dockerd log: {self.tail(15)}"
            )
        return result

    def stop(self) -> None:
        """Stop dockerd by its PID (it stops its containerd), then what it left mounted."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(DOCKER_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        containerd_pid = self.base / "exec" / "containerd" / "containerd.pid"
        if containerd_pid.exists():
            # dockerd stops its containerd unless it was killed; then the containerd is ours to end.
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(containerd_pid.read_text().strip()), signal.SIGKILL)
        unmount_everything_under(self.base)


@pytest.fixture
def docker_engine() -> Iterator[DockerEngine]:
    """A dockerd not yet started: the test calls ``start(...)`` with its flags; it is stopped afterwards."""
    if not IS_ROOT:
        pytest.skip("dockerd needs root")
    if shutil.which("dockerd") is None:
        pytest.skip("dockerd is not installed (apt-get install docker.io)")
    client = docker_client_binary()
    if client is None:
        pytest.skip("the docker CLI is not installed (apt-get install docker.io)")
    # Not under tmp_path: containerd's socket path must stay within the 108 bytes a unix socket address has.
    base = Path(tempfile.mkdtemp(prefix="dbd-", dir="/tmp"))
    engine = DockerEngine(base, client)
    try:
        yield engine
    finally:
        try:
            engine.stop()
        finally:
            shutil.rmtree(base)


@pytest.fixture
def busybox_tar(tmp_path: Path) -> Path:
    """A rootfs tar of Debian's static busybox with applet links, for ``docker import``."""
    if not BUSYBOX.exists():
        pytest.skip("no /bin/busybox (apt-get install busybox-static)")
    rootfs = tmp_path / "busybox-rootfs"
    (rootfs / "bin").mkdir(parents=True)
    for directory in ("etc", "tmp", "proc", "sys", "dev", "data"):
        (rootfs / directory).mkdir()
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in APPLETS:
        (rootfs / "bin" / applet).symlink_to("busybox")
    tar_path = tmp_path / "busybox.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(rootfs, arcname=".")
    return tar_path


@pytest.fixture
def netns(tmp_path: Path) -> Iterator[str]:
    """A network namespace of the test's own (``ip netns add``), deleted afterwards."""
    if not IS_ROOT:
        pytest.skip("network namespaces need root")
    name = f"dbtest-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


@pytest.fixture
def wait_for() -> Callable[[Callable[[], bool], float, str], None]:
    """``wait_for(condition, seconds, what)``: poll until true, else fail naming ``what``."""

    def waiter(condition: Callable[[], bool], seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out after {seconds}s waiting for {what}")

    return waiter


@dataclass
class PluginProcess:
    """``drivebay plugin serve`` running as its own process (inside a network namespace)."""

    name: str
    root: Path
    process: subprocess.Popen[bytes]


@pytest.fixture
def bridge_plugin_in_netns(netns: str, tmp_path: Path, wait_for: Callable[..., None]) -> Iterator[PluginProcess]:
    """The bridge driver served from inside ``netns``; stopped by SIGTERM afterwards."""
    if "bridge" not in {d.name for d in installed_drivers(KINDS["network"])}:
        pytest.skip("network driver 'bridge' is not installed: pip install drivebay-netdriver-bridge")
    name = unique_plugin_name()
    root = tmp_path / "net-root"
    socket = SOCKETS_DIR / f"{name}.sock"
    log = tmp_path / "plugin.log"
    command = [
        "ip", "netns", "exec", netns, sys.executable, "-m", "drivebay.cli.main", "--root", str(root),
        "plugin", "serve", "--kind", "network", "--driver", "bridge", "--name", name, "--socket", str(socket),
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: socket.exists() or process.poll() is not None, 30, f"the plugin socket {socket}")
        assert process.poll() is None, f"drivebay plugin serve exited: {log.read_text()}"
        yield PluginProcess(name, root, process)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    assert process.returncode == 0, log.read_text()
    assert not socket.exists(), "the server must remove its socket on exit"
