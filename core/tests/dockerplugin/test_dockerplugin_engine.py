"""A real dockerd (Debian's docker.io 20.10) using drivebay drivers served as legacy plugins.

Each test runs its own dockerd on a temporary data root with networking off
and stops it by PID afterwards; the plugin server is started first and
stopped last, because dockerd calls it while shutting down.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from plugin_fixtures import DockerEngine, PluginFactory, PluginProcess, needs_root, unmount_everything_under

pytestmark = needs_root

LONG_LINE = 40_000
"""Longer than dockerd's 16 KiB buffer, so dockerd splits it into partial entries."""


def test_volume_plugin_holds_what_a_container_writes(
    serve_plugin: PluginFactory, docker_engine: DockerEngine, busybox_tar: Path
) -> None:
    plugin = serve_plugin(("volume", "local"), discoverable=True)
    docker_engine.start()
    docker = docker_engine.docker
    docker("import", str(busybox_tar), "bb:1")
    docker("volume", "create", "-d", plugin.name, "--name", "data1")
    listed = docker("volume", "ls", "--format", "{{.Driver}} {{.Name}}").stdout.split("\n")
    assert f"{plugin.name} data1" in listed
    docker("run", "--rm", "-v", "data1:/data", "bb:1", "sh", "-c", "echo written-in-container > /data/file")
    assert (plugin.root / "volumes" / "data1" / "_data" / "file").read_text() == "written-in-container\n"
    seen = docker("run", "--rm", "-v", "data1:/data", "bb:1", "cat", "/data/file").stdout
    assert seen == "written-in-container\n"
    inspected = json.loads(docker("volume", "inspect", "data1").stdout)[0]
    assert inspected["Mountpoint"] == str(plugin.root / "volumes" / "data1" / "_data")
    docker("volume", "rm", "data1")
    assert not (plugin.root / "volumes" / "data1").exists()


def test_log_plugin_stores_json_file_and_docker_logs_reads_it_back(
    serve_plugin: PluginFactory, docker_engine: DockerEngine, busybox_tar: Path
) -> None:
    plugin = serve_plugin(("log", "json-file"), discoverable=True)
    docker_engine.start()
    docker = docker_engine.docker
    docker("import", str(busybox_tar), "bb:1")
    script = f"echo first; echo second >&2; head -c {LONG_LINE} /dev/zero | tr '\\0' x; echo; echo last"
    cid = docker("run", "-d", "--log-driver", plugin.name, "bb:1", "sh", "-c", script).stdout.strip()
    assert docker("wait", cid).stdout.strip() == "0"
    logs = docker("logs", cid)
    assert logs.stdout.split("\n") == ["first", "x" * LONG_LINE, "last", ""]
    assert logs.stderr == "second\n"
    log_file = plugin.root / "containers" / cid / f"{cid}-json.log"
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    # dockerd copies stdout and stderr in separate goroutines: only the order within a stream is kept.
    assert [r["log"] for r in records if r["stream"] == "stderr"] == ["second\n"]
    stdout = [r["log"] for r in records if r["stream"] == "stdout"]
    assert stdout[0] == "first\n" and stdout[-1] == "last\n"
    long_parts = stdout[1:-1]
    assert len(long_parts) > 1, "dockerd should have split the long line into partial entries"
    assert "".join(long_parts) == "x" * LONG_LINE + "\n"
    assert all(not part.endswith("\n") for part in long_parts[:-1])
    assert docker("logs", "--tail", "1", cid).stdout == "last\n"
    docker("rm", cid)


def test_docker_logs_reads_a_running_containers_log_through_the_plugin(
    serve_plugin: PluginFactory, docker_engine: DockerEngine, busybox_tar: Path, wait_for: Callable[..., None]
) -> None:
    plugin = serve_plugin(("log", "json-file"), discoverable=True)
    docker_engine.start()
    docker = docker_engine.docker
    docker("import", str(busybox_tar), "bb:1")
    cid = docker("run", "-d", "--log-driver", plugin.name, "bb:1", "sh", "-c", "echo early; sleep 3; echo late").stdout
    cid = cid.strip()
    wait_for(lambda: docker("logs", cid).stdout == "early\n", 30, "'early' in docker logs of the running container")
    assert docker("wait", cid).stdout.strip() == "0"
    assert docker("logs", cid).stdout == "early\nlate\n"
    docker("rm", cid)


@pytest.mark.parametrize("driver", ["overlay2", "vfs"])
def test_graph_plugin_runs_commits_and_saves_images(
    driver: str, serve_plugin: PluginFactory, docker_engine: DockerEngine, busybox_tar: Path, tmp_path: Path
) -> None:
    plugin = serve_plugin(("graph", driver), discoverable=True)
    docker_engine.start("--experimental", "--storage-driver", plugin.name)
    docker = docker_engine.docker
    info = json.loads(docker("info", "--format", "{{json .}}").stdout)
    assert info["Driver"] == plugin.name
    docker("import", str(busybox_tar), "bb:1")
    assert docker("run", "--rm", "bb:1", "echo", "hello").stdout == "hello\n"
    docker("run", "--name", "c1", "bb:1", "sh", "-c", "echo changed > /etc/motd && rm /bin/wc && mkdir /newdir")
    changes = set(docker("diff", "c1").stdout.splitlines())
    assert {"A /etc/motd", "C /etc", "D /bin/wc", "C /bin", "A /newdir"} <= changes
    docker("commit", "c1", "bb:2")
    docker("rm", "c1")
    assert docker("run", "--rm", "bb:2", "cat", "/etc/motd").stdout == "changed\n"
    assert docker("run", "--rm", "bb:2", "ls", "/bin/wc", check=False).returncode != 0
    saved = tmp_path / "bb2.tar"
    docker("save", "-o", str(saved), "bb:2")
    docker_image = json.loads(docker("inspect", "bb:2").stdout)[0]

    # drivebay checks every layer tar against the config's diff IDs while loading; the same image ID
    # means the same config, so the same diff IDs.
    drivebay_root = tmp_path / "drivebay-load"
    command = [sys.executable, "-m", "drivebay.cli.main", "--root", str(drivebay_root), "-s", "vfs"]
    loaded = subprocess.run([*command, "image", "load", "-i", str(saved)], capture_output=True, text=True, check=False)
    assert loaded.returncode == 0, loaded.stderr
    listed = subprocess.run([*command, "image", "ls", "--json"], capture_output=True, text=True, check=False)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["id"], r["layers"]) for r in rows if r["tag"] == "2"] == [
        (docker_image["Id"], len(docker_image["RootFS"]["Layers"]))
    ]
    unmount_everything_under(drivebay_root)
    docker("rmi", "bb:2", "bb:1")


def test_network_plugin_gives_containers_a_working_interface(
    netns: str, bridge_plugin_in_netns: PluginProcess, docker_engine: DockerEngine, busybox_tar: Path
) -> None:
    plugin = bridge_plugin_in_netns
    docker_engine.netns = netns
    docker_engine.start()
    docker = docker_engine.docker
    docker("import", str(busybox_tar), "bb:1")
    docker("network", "create", "-d", plugin.name, "--ipam-driver", plugin.name, "net1")
    network = json.loads(docker("network", "inspect", "net1").stdout)[0]
    assert network["Driver"] == plugin.name
    subnet = ipaddress.IPv4Network(network["IPAM"]["Config"][0]["Subnet"])
    gateway = network["IPAM"]["Config"][0]["Gateway"]
    bridges = subprocess.run(
        ["ip", "netns", "exec", netns, "ip", "-4", "-o", "addr", "show", "type", "bridge"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert f"inet {gateway}/{subnet.prefixlen}" in bridges, "the gateway lives on the bridge driver's bridge"
    shown = docker(
        "run", "--rm", "--network", "net1", "bb:1", "sh", "-c", f"ip -4 -o addr show eth0 && ping -c 1 -W 5 {gateway}"
    ).stdout
    address = ipaddress.IPv4Interface(shown.split(" inet ")[1].split()[0])
    assert address.network == subnet and str(address.ip) != gateway
    assert "1 packets received" in shown
    docker("network", "rm", "net1")
    links = subprocess.run(["ip", "netns", "exec", netns, "ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f"br-{network['Id'][:12]}" not in links
