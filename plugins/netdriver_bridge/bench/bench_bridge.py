"""Benchmark of the bridge driver, run as root in private network namespaces only.

1. Connect N containers (default 100) to one network through the driver in one
   process, and do the same netlink work with ``ip`` commands in a shell loop
   (veth pair with its peer created in the sandbox and the host end on the
   bridge, rename, address, link up, lo up, default route). Reports the time
   per connect of each and the ratio driver / shell (target: at most 1).
2. Container-to-container TCP throughput over the bridge, against a plain veth
   pair between two namespaces, measured in the same run with the same
   single-stream sender.

Usage: ``python bench/bench_bridge.py [--containers N] [--bytes B] [--json]``.
Nothing is created in the namespace the script starts in; everything it makes
is deleted at the end, failures included.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import IPv4Network
from pathlib import Path

from drivebay.facades.network import NetworkDriver
from drivebay.loader import KINDS, load_driver
from drivebay.state import StateDB
from drivebay_netdriver_bridge.namespaces import entered

SINK = textwrap.dedent(
    """
    import socket, sys
    srv = socket.socket()
    srv.bind(("0.0.0.0", 5201))
    srv.listen(1)
    print("ready", flush=True)
    conn, _ = srv.accept()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    total, buf = 0, bytearray(1 << 20)
    while (n := conn.recv_into(buf)):
        total += n
    conn.sendall(str(total).encode())
    """
)

SOURCE = textwrap.dedent(
    """
    import socket, sys, time
    total = int(sys.argv[2])
    chunk = b"x" * (1 << 20)
    s = socket.create_connection((sys.argv[1], 5201))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    start = time.perf_counter()
    sent = 0
    while sent < total:
        s.sendall(chunk)
        sent += len(chunk)
    s.shutdown(socket.SHUT_WR)
    assert int(s.recv(64)) == sent
    print(sent * 8 / (time.perf_counter() - start) / 1e9)
    """
)


class Spaces:
    """Namespaces made by the benchmark, all deleted by :meth:`delete_all`."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def add(self, prefix: str) -> Path:
        name = f"dbb-{prefix}-{secrets.token_hex(3)}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        self.names.append(name)
        return Path("/run/netns") / name

    def delete_all(self) -> None:
        for name in reversed(self.names):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        self.names.clear()


@contextmanager
def host_namespace(spaces: Spaces) -> Iterator[Path]:
    host = spaces.add("host")
    with entered(host):
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        yield host


def bench_driver_connects(spaces: Spaces, count: int, root: Path) -> float:
    driver = NetworkDriver(load_driver(KINDS["network"], "bridge"), root / "bridge", StateDB.for_root(root))
    driver.create_network("bench", IPv4Network("10.200.0.0/16"))
    boxes = [spaces.add("d") for _ in range(count)]
    start = time.perf_counter()
    for box in boxes:
        driver.connect("bench", box)
    elapsed = time.perf_counter() - start
    driver.remove_network("bench", force=True)
    return elapsed / count


def bench_shell_connects(spaces: Spaces, count: int) -> float:
    boxes = [spaces.add("s") for _ in range(count)]
    setup = "ip link add brsh type bridge && ip addr add 10.201.0.1/16 dev brsh && ip link set brsh up"
    subprocess.run(["sh", "-c", setup], check=True)
    lines = []
    for n, box in enumerate(boxes, start=2):
        ns, address = box.name, f"10.201.{n // 256}.{n % 256}/16"
        lines += [
            f"ip link add vsh{n} mtu 1500 type veth peer name tmp{n} netns {ns}",
            f"ip link set vsh{n} master brsh up",
            f"ip -n {ns} link set tmp{n} name eth0",
            f"ip -n {ns} addr add {address} dev eth0",
            f"ip -n {ns} link set eth0 up",
            f"ip -n {ns} link set lo up",
            f"ip -n {ns} route add default via 10.201.0.1",
        ]
    script = "set -e\n" + "\n".join(lines) + "\n"
    start = time.perf_counter()
    subprocess.run(["sh", "-c", script], check=True)
    elapsed = time.perf_counter() - start
    subprocess.run(["ip", "link", "del", "brsh"], check=True)
    return elapsed / count


def throughput(client: Path, server: Path, address: str, nbytes: int) -> float:
    """Gbit/s of one TCP stream from ``client`` to ``address`` in ``server``."""
    sink = subprocess.Popen(
        ["ip", "netns", "exec", server.name, sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True
    )
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        out = subprocess.run(
            ["ip", "netns", "exec", client.name, sys.executable, "-c", SOURCE, address, str(nbytes)],
            capture_output=True,
            text=True,
            check=True,
        )
        return float(out.stdout)
    finally:
        sink.wait(timeout=30)


def bench_throughput(spaces: Spaces, root: Path, nbytes: int, runs: int) -> tuple[float, float]:
    driver = NetworkDriver(load_driver(KINDS["network"], "bridge"), root / "bridge", StateDB.for_root(root))
    driver.create_network("tput", IPv4Network("10.202.0.0/24"))
    c1, c2 = spaces.add("t1"), spaces.add("t2")
    driver.connect("tput", c1)
    server_ep = driver.connect("tput", c2)
    p1, p2 = spaces.add("v1"), spaces.add("v2")
    subprocess.run(["ip", "link", "add", "pv1", "netns", p1.name, "type", "veth", "peer", "pv2", "netns", p2.name],
                   check=True)  # fmt: skip
    for ns, ifname, address in ((p1, "pv1", "10.203.0.1/24"), (p2, "pv2", "10.203.0.2/24")):
        for cmd in (f"addr add {address} dev {ifname}", f"link set {ifname} up", "link set lo up"):
            subprocess.run(["ip", "-n", ns.name, *cmd.split()], check=True)
    bridge, veth = [], []
    for _ in range(runs):  # interleaved, so both see the same machine load
        bridge.append(throughput(c1, c2, str(server_ep.address.ip), nbytes))
        veth.append(throughput(p1, p2, "10.203.0.2", nbytes))
    driver.remove_network("tput", force=True)
    return statistics.median(bridge), statistics.median(veth)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--bytes", type=int, default=2 << 30, help="bytes per throughput run (default 2 GiB)")
    parser.add_argument("--runs", type=int, default=3, help="throughput runs of each kind (median reported)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    spaces = Spaces()
    try:
        with tempfile.TemporaryDirectory(prefix="dbb-") as tmp, host_namespace(spaces):
            driver_s = bench_driver_connects(spaces, args.containers, Path(tmp) / "a")
            shell_s = bench_shell_connects(spaces, args.containers)
            bridge_gbps, veth_gbps = bench_throughput(spaces, Path(tmp) / "b", args.bytes, args.runs)
    finally:
        spaces.delete_all()
    result = {
        "containers": args.containers,
        "driver_ms_per_connect": round(driver_s * 1000, 2),
        "shell_ip_ms_per_connect": round(shell_s * 1000, 2),
        "ratio_driver_to_shell": round(driver_s / shell_s, 3),
        "bridge_gbit_s": round(bridge_gbps, 2),
        "veth_gbit_s": round(veth_gbps, 2),
        "ratio_bridge_to_veth": round(bridge_gbps / veth_gbps, 3),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:26} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
