"""``drivebay network ...`` end to end: the commands exactly as DESIGN.md names them, in the test's host namespace."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from bridge_testkit import Namespaces

DRIVEBAY = Path(sys.executable).with_name("drivebay")
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(netns: Namespaces, tmp_path: Path) -> Run:
    probe = subprocess.run([str(DRIVEBAY), "network", "--help"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"the drivebay CLI does not start here: {probe.stderr.strip().splitlines()[-1:]}")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", netns.host.name, str(DRIVEBAY), "--root", str(tmp_path / "root"), *args],
            capture_output=True,
            text=True,
            check=False,
        )

    return run


def test_network_commands(cli: Run, netns: Namespaces) -> None:
    run = cli
    options = ["-o", "com.docker.network.bridge.name=dbt-web", "-o", "com.docker.network.bridge.enable_icc=true"]
    created = run("network", "create", "web", "--subnet", "10.95.0.0/24", "--gateway", "10.95.0.254", *options)
    assert created.returncode == 0, created.stderr
    network_id = created.stdout.strip()
    box = netns.container()
    connected = run("network", "connect", "web", "--netns", str(box), "--ip", "10.95.0.7", "-p", "8085:80/tcp")
    assert (connected.returncode, connected.stdout) == (0, "eth0 10.95.0.7/24\n"), connected.stderr
    assert netns.ping(box, "10.95.0.254")

    listing = run("network", "ls")
    assert listing.stdout.splitlines()[0].split() == [
        "NETWORK", "ID", "NAME", "DRIVER", "SUBNET", "GATEWAY", "BRIDGE", "ENDPOINTS"
    ]  # fmt: skip
    assert listing.stdout.splitlines()[1].split() == [
        network_id[:12], "web", "bridge", "10.95.0.0/24", "10.95.0.254", "dbt-web", "1"
    ]  # fmt: skip
    [shown] = json.loads(run("network", "ls", "--json").stdout)
    assert shown["id"] == network_id and shown["endpoints"][0]["address"] == "10.95.0.7/24"
    inspected = json.loads(run("network", "inspect", "web").stdout)
    assert inspected["driver_info"]["bridge"] == "dbt-web"
    assert inspected["endpoints"][0]["ports"] == ["8085:80/tcp"] and inspected["endpoints"][0]["netns"] == str(box)

    refused = run("network", "rm", "web")
    assert refused.returncode == 1 and refused.stderr.startswith("drivebay: network 'web' has 1 connected endpoint")
    assert len(refused.stderr.strip().splitlines()) == 1
    taken = run("network", "connect", "web", "--netns", str(netns.container()), "--ip", "10.95.0.7")
    assert taken.returncode == 1 and "10.95.0.7 is already in use" in taken.stderr

    assert run("network", "disconnect", "web", "--netns", str(box)).returncode == 0
    again = run("network", "disconnect", "web", "--netns", str(box))
    assert again.returncode == 1 and "is not connected to network 'web'" in again.stderr
    assert run("network", "rm", "web").returncode == 0
    assert run("network", "ls", "--json").stdout.strip() == "[]"
    missing = run("network", "inspect", "web")
    assert missing.returncode == 1 and "network 'web' does not exist" in missing.stderr


def test_rm_force_and_usage_errors(cli: Run, netns: Namespaces) -> None:
    run = cli
    assert run("network", "create", "n").returncode == 0
    assert run("network", "connect", "n", "--netns", str(netns.container())).returncode == 0
    assert run("network", "rm", "-f", "n").returncode == 0
    assert run("network", "connect", "n").returncode == 2  # --netns is required
    bad_port = run("network", "create", "m", "-o", "nonsense")
    assert bad_port.returncode == 2
    bad_option = run("network", "create", "m", "-o", "color=blue")
    assert bad_option.returncode == 1 and "has no option 'color'" in bad_option.stderr
