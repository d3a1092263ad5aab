"""Hermetic network fixtures: every test runs in a "host" namespace of its own.

The test process's main thread enters a fresh namespace for the whole test, so
the driver's bridge, veths, sysctls and nft tables land there; the
"containers" are further namespaces. Nothing touches the namespace pytest
started in, which the fixture checks before yielding. Every namespace is
deleted in teardown, failures included.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from bridge_testkit import NETNS_DIR, Namespaces, inode, ip, open_driver

from drivebay.facades.network import NetworkDriver
from drivebay_netdriver_bridge.namespaces import entered


@pytest.fixture
def netns() -> Iterator[Namespaces]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if shutil.which("ip") is None or shutil.which("nft") is None:
        pytest.skip("needs iproute2 and nftables")
    host_name = f"dbt-h-{secrets.token_hex(4)}"
    ip("netns", "add", host_name)
    spaces = Namespaces(NETNS_DIR / host_name)
    started_in = inode("/proc/thread-self/ns/net")
    try:
        with entered(spaces.host):
            assert inode("/proc/thread-self/ns/net") != started_in, "still in the namespace pytest started in"
            ip("link", "set", "lo", "up")
            yield spaces
    finally:
        for path in [*spaces.created, spaces.host]:
            subprocess.run(["ip", "netns", "del", path.name], capture_output=True, check=False)


@pytest.fixture
def driver(netns: Namespaces, tmp_path: Path) -> NetworkDriver:
    return open_driver(tmp_path / "root")
