"""Helpers for the bridge driver tests: namespaces, packets, a fresh driver."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from drivebay.facades.network import NetworkDriver
from drivebay.loader import KINDS, load_driver
from drivebay.state import StateDB

NETNS_DIR = Path("/run/netns")

ECHO_SERVER = textwrap.dedent(
    """
    import socket, sys
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", int(sys.argv[1])))
    srv.listen(8)
    print("ready", flush=True)
    while True:
        conn, peer = srv.accept()
        with conn:
            data = conn.recv(4096)
            conn.sendall(data + b" from " + peer[0].encode())
    """
)

ECHO_CLIENT = textwrap.dedent(
    """
    import socket, sys
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3) as s:
        s.sendall(b"hello")
        print(s.recv(4096).decode())
    """
)


def inode(path: str) -> int:
    return os.stat(path).st_ino


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@dataclass
class Namespaces:
    """The test's namespaces: one host (entered by the test thread) and any number of containers."""

    host: Path
    created: list[Path] = field(default_factory=list)

    def container(self, prefix: str = "c") -> Path:
        name = f"dbt-{prefix}-{secrets.token_hex(4)}"
        ip("netns", "add", name)
        path = NETNS_DIR / name
        self.created.append(path)
        return path

    def delete(self, path: Path) -> None:
        ip("netns", "del", path.name)
        self.created.remove(path)

    @staticmethod
    def run(netns: Path, *cmd: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", netns.name, *cmd], capture_output=True, text=True, timeout=timeout, check=False
        )

    def ping(self, netns: Path, address: object) -> bool:
        return self.run(netns, "ping", "-c1", "-W1", str(address)).returncode == 0

    def echo_server(self, netns: Path, port: int) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", netns.name, sys.executable, "-c", ECHO_SERVER, str(port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        return proc

    def echo(self, netns: Path, address: object, port: int) -> str | None:
        """Send "hello" over TCP; returns the reply ("hello from PEER") or ``None`` when unreachable."""
        proc = self.run(netns, sys.executable, "-c", ECHO_CLIENT, str(address), str(port))
        return proc.stdout.strip() if proc.returncode == 0 else None


def open_driver(root: Path) -> NetworkDriver:
    """A fresh bridge driver over ``root``, as a new drivebay process would open it."""
    return NetworkDriver(load_driver(KINDS["network"], "bridge"), root / "bridge", StateDB.for_root(root))
