"""``drivebay-cni-bridge`` driven the way libcni drives a plugin.

libcni (``pkg/invoke``) executes the plugin with its environment plus
``CNI_COMMAND``, ``CNI_CONTAINERID``, ``CNI_NETNS``, ``CNI_IFNAME``,
``CNI_ARGS`` and ``CNI_PATH``, writes the network configuration (with
``runtimeConfig`` and, for CHECK and DEL, ``prevResult``) to stdin, and reads
the result or the error JSON from stdout. :class:`LibcniRunner` does exactly
that, in the test's host namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from bridge_testkit import Namespaces

from drivebay_netdriver_bridge.firewall import TABLE

PLUGIN = Path(sys.executable).with_name("drivebay-cni-bridge")


@dataclass
class Outcome:
    returncode: int
    output: dict[str, Any] | None


@dataclass
class LibcniRunner:
    host: Path
    root: Path
    config: dict[str, Any]

    def __call__(
        self,
        command: str,
        container: str = "",
        netns: Path | str = "",
        ifname: str = "eth0",
        runtime: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        stdin: str | None = None,
    ) -> Outcome:
        env = {
            **os.environ,
            "CNI_COMMAND": command,
            "CNI_PATH": str(PLUGIN.parent),
            "DRIVEBAY_ROOT": str(self.root),
        }
        if command in ("ADD", "DEL", "CHECK"):
            env |= {
                "CNI_CONTAINERID": container,
                "CNI_NETNS": str(netns),
                "CNI_IFNAME": ifname,
                "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAME={container}",
            }
        conf = {**self.config, **(extra or {})}
        if runtime:
            conf["runtimeConfig"] = runtime
        proc = subprocess.run(
            ["ip", "netns", "exec", self.host.name, str(PLUGIN)],
            input=json.dumps(conf) if stdin is None else stdin,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.stderr == "", proc.stderr
        return Outcome(proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else None)


@pytest.fixture
def cni(netns: Namespaces, tmp_path: Path) -> LibcniRunner:
    if not PLUGIN.exists() or shutil.which("ip") is None:
        pytest.skip("drivebay-cni-bridge is not installed in this environment")
    config = {
        "cniVersion": "1.1.0",
        "name": "cninet",
        "type": "drivebay-cni-bridge",
        "bridge": "dbt-cni0",
        "ipam": {"subnet": "10.90.0.0/24"},
        "capabilities": {"portMappings": True},
    }
    return LibcniRunner(netns.host, tmp_path / "root", config)


def ep_rules() -> list[str]:
    out = subprocess.run(["nft", "-j", "list", "table", "ip", TABLE], capture_output=True, text=True, check=True)
    items = json.loads(out.stdout)["nftables"]
    return [str(i["rule"]["comment"]) for i in items if "rule" in i and str(i["rule"].get("comment")).startswith("ep:")]


def test_version_and_status(cni: LibcniRunner) -> None:
    version = cni("VERSION")
    assert version.returncode == 0 and version.output is not None
    assert version.output["cniVersion"] == "1.1.0" and "1.1.0" in version.output["supportedVersions"]
    assert cni("STATUS") == Outcome(0, None)


def test_add_check_del(cni: LibcniRunner, netns: Namespaces) -> None:
    box = netns.container()
    added = cni(
        "ADD", "ctr-1", box, runtime={"portMappings": [{"hostPort": 8088, "containerPort": 80, "protocol": "tcp"}]}
    )
    assert added.returncode == 0, added.output
    result = added.output
    assert result is not None and result["cniVersion"] == "1.1.0"
    assert result["ips"] == [{"address": "10.90.0.2/24", "gateway": "10.90.0.1", "interface": 2}]
    assert result["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.90.0.1"}]
    assert result["interfaces"][0]["name"] == "dbt-cni0"
    assert result["interfaces"][2] == {"name": "eth0", "mac": "02:42:0a:5a:00:02", "sandbox": str(box)}
    assert netns.ping(box, "10.90.0.1")
    server = netns.echo_server(box, 80)
    try:
        with socket.create_connection(("127.0.0.1", 8088), timeout=3) as conn:
            conn.sendall(b"hi")
            assert conn.recv(100).startswith(b"hi from ")
    finally:
        server.kill()
        server.wait()

    prev = {"prevResult": result}
    assert cni("CHECK", "ctr-1", box, extra=prev) == Outcome(0, None)
    assert netns.run(box, "ip", "addr", "flush", "dev", "eth0").returncode == 0
    broken = cni("CHECK", "ctr-1", box, extra=prev)
    assert broken.returncode == 1 and broken.output is not None
    assert broken.output["code"] == 100 and "lacks address 10.90.0.2/24" in broken.output["msg"]

    assert cni("DEL", "ctr-1", box, extra=prev) == Outcome(0, None)
    assert cni("DEL", "ctr-1", box, extra=prev) == Outcome(0, None)  # idempotent
    assert ep_rules() == []
    assert netns.run(box, "ip", "link", "show", "eth0").returncode != 0
    unknown = cni("CHECK", "ctr-1", box, extra=prev)
    assert unknown.returncode == 1 and unknown.output is not None and unknown.output["code"] == 3


def test_add_is_idempotent_for_the_same_attachment(cni: LibcniRunner, netns: Namespaces) -> None:
    box = netns.container()
    first, second = cni("ADD", "ctr-2", box), cni("ADD", "ctr-2", box)
    assert first.returncode == second.returncode == 0
    assert first.output == second.output


def test_del_after_the_namespace_is_gone_still_removes_rules(cni: LibcniRunner, netns: Namespaces) -> None:
    box = netns.container()
    runtime = {"portMappings": [{"hostPort": 8089, "containerPort": 80, "protocol": "udp"}]}
    assert cni("ADD", "ctr-3", box, runtime=runtime).returncode == 0
    assert len(ep_rules()) == 2
    netns.delete(box)
    assert cni("DEL", "ctr-3", "", runtime=runtime) == Outcome(0, None)
    assert ep_rules() == []
    again = cni("ADD", "ctr-4", netns.container())
    assert again.output is not None and again.output["ips"][0]["address"] == "10.90.0.3/24"  # round-robin goes on


def test_gc_removes_attachments_not_listed(cni: LibcniRunner, netns: Namespaces) -> None:
    keep, drop = netns.container(), netns.container()
    assert cni("ADD", "keep", keep).returncode == 0
    assert cni("ADD", "drop", drop, runtime={"portMappings": [{"hostPort": 8090, "containerPort": 80}]}).returncode == 0
    valid = {"cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]}
    assert cni("GC", extra=valid) == Outcome(0, None)
    assert netns.run(keep, "ip", "link", "show", "eth0").returncode == 0
    assert netns.run(drop, "ip", "link", "show", "eth0").returncode != 0
    assert ep_rules() == []


def test_errors_are_json_on_stdout(cni: LibcniRunner, netns: Namespaces) -> None:
    old = cni("ADD", "x", netns.container(), extra={"cniVersion": "0.1.0"})
    assert old.returncode == 1 and old.output is not None and old.output["code"] == 1
    missing = cni("ADD", "", netns.container())
    assert missing.output is not None and missing.output["code"] == 4 and "CNI_CONTAINERID" in missing.output["msg"]
    garbage = cni("ADD", "x", netns.container(), stdin="{not json")
    assert garbage.returncode == 1 and garbage.output is not None and garbage.output["code"] == 6
    nowhere = cni("ADD", "x", "/run/netns/dbt-does-not-exist")
    assert nowhere.returncode == 1 and nowhere.output is not None and "cannot be opened" in nowhere.output["msg"]
