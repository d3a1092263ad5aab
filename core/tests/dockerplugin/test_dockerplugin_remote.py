"""drivebay as the client: ``docker-plugin:NAME`` drivers, found and activated like dockerd does, behind core's facades.

The plugins here are drivebay drivers served by drivebay, so every call makes
the full HTTP round trip and the answers can be compared with the driver
called in-process.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from plugin_fixtures import PluginFactory, PluginProcess, needs_root

from drivebay.config import Config
from drivebay.errors import LayerNotFound, PluginError, VolumeNotFound
from drivebay.facades.graph import GraphDriver
from drivebay.facades.log import open_log_driver
from drivebay.facades.volume import open_volume_driver
from drivebay.hookspecs.graph import Change, ChangeKind
from drivebay.hookspecs.log import LogMessage, ReadConfig
from drivebay.loader import KINDS, load_driver
from drivebay.selection import open_graph_driver
from drivebay.state import StateDB

pytestmark = needs_root


def layer_tar(files: dict[str, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def test_volumes_through_a_docker_plugin(serve_plugin: PluginFactory, tmp_path: Path) -> None:
    plugin = serve_plugin(("volume", "local"), discoverable=True)
    state = StateDB.for_root(tmp_path / "client")
    try:
        volumes = open_volume_driver(Config(root=tmp_path / "client", volume_driver=plugin.driver_name), state)
        assert volumes.capabilities.scope == "local"
        view = volumes.create("remote1", {})
        served_data = plugin.root / "volumes" / "remote1" / "_data"
        assert view.volume.mountpoint == served_data and view.driver == plugin.driver_name
        assert volumes.mount("remote1", "caller") == served_data
        (served_data / "file").write_text("through http")
        assert [v.volume.name for v in volumes.list()] == ["remote1"]
        volumes.unmount("remote1", "caller")
        with pytest.raises(VolumeNotFound):
            volumes.inspect("missing")
        volumes.remove("remote1")
        assert not served_data.exists()
    finally:
        state.close()


@pytest.mark.parametrize("driver", ["vfs", "overlay2"])
def test_layers_through_a_docker_plugin_match_the_driver_in_process(
    serve_plugin: PluginFactory, tmp_path: Path, driver: str
) -> None:
    plugin = serve_plugin(("graph", driver), discoverable=True)
    state = StateDB.for_root(tmp_path / "client")
    try:
        graph = open_graph_driver(Config(root=tmp_path / "client", storage_driver=plugin.driver_name), state)
        assert graph.capabilities.max_depth > 1
        graph.create_from_tar("base", None, layer_tar({"etc/motd": b"hi\n", "bin/sh": b"#!" * 500}))
        graph.create("child", "base")
        assert graph.apply_diff("child", layer_tar({"etc/.wh.motd": b"", "new": b"12345"})) == 5
        assert graph.changes("child") == [
            Change("/etc", ChangeKind.MODIFY), Change("/etc/motd", ChangeKind.DELETE), Change("/new", ChangeKind.ADD)
        ]
        assert graph.diff_size("child") == 5
        remote_tar = io.BytesIO()
        graph.diff("child", remote_tar)
        with graph.mounted("child") as view:
            assert (view / "new").read_bytes() == b"12345" and not (view / "etc" / "motd").exists()
        with pytest.raises(LayerNotFound):
            graph.metadata("missing")
        served = plugin.server.sets[0].driver  # type: ignore[attr-defined]
        assert isinstance(served, GraphDriver)
        local_tar = io.BytesIO()
        served.diff("child", local_tar)
        assert remote_tar.getvalue() == local_tar.getvalue()
        graph.remove("child")
        graph.remove("base")
        assert not served.exists("base")
        graph.cleanup()
    finally:
        state.close()


def test_logs_through_a_docker_plugin_fifo(serve_plugin: PluginFactory, tmp_path: Path) -> None:
    plugin = serve_plugin(("log", "json-file"), discoverable=True)
    state = StateDB.for_root(tmp_path / "client")
    try:
        logs = open_log_driver(Config(root=tmp_path / "client", log_driver=plugin.driver_name), state)
        assert logs.capabilities.read_logs
        info = logs.info_for("app", container_id="a" * 64)
        with logs.open(info) as writer:
            writer.write([LogMessage(b"one", "stdout", 1_000)])
            writer.write([LogMessage(b"lo", "stdout", 2_000, partial=True), LogMessage(b"ng", "stdout", 2_000)])
            writer.write([LogMessage(b"err", "stderr", 3_000)])
        stored = plugin.root / "containers" / ("a" * 64) / f"{'a' * 64}-json.log"
        assert stored.read_text().count("\n") == 4, "the split line is stored as two parts, as dockerd does"
        entries = [(e.source, e.line) for e in logs.read(info, ReadConfig())]
        assert entries == [("stdout", "one"), ("stdout", "long"), ("stderr", "err")]
        assert [e.line for e in logs.read(info, ReadConfig(tail=1))] == ["err"]
    finally:
        state.close()


def test_a_missing_plugin_is_reported_where_dockerd_would_look() -> None:
    loaded = load_driver(KINDS["volume"], "docker-plugin:dbtest-absent")
    reason = loaded.hook.volume_probe(root=Path("/nonexistent"))
    assert "no Docker plugin named 'dbtest-absent'" in reason and "/run/docker/plugins" in reason
    with pytest.raises(PluginError, match="dbtest-absent"):
        loaded.hook.volume_capabilities()


def test_a_plugin_of_another_kind_is_refused(serve_plugin: PluginFactory) -> None:
    plugin = serve_plugin(("volume", "local"), discoverable=True)
    loaded = load_driver(KINDS["graph"], plugin.driver_name)
    assert "implements VolumeDriver, not GraphDriver" in loaded.hook.graph_probe(home=Path("/nonexistent"))


def test_networks_through_a_docker_plugin(
    netns: str, bridge_plugin_in_netns: PluginProcess, tmp_path: Path
) -> None:
    """drivebay's CLI, in the plugin's namespace, drives the served bridge driver and joins a sandbox."""
    plugin = bridge_plugin_in_netns
    config = tmp_path / "config.yaml"
    config.write_text(f"network-driver: docker-plugin:{plugin.name}\n")
    sandbox = f"{netns}-sbx"
    subprocess.run(["ip", "netns", "add", sandbox], check=True)

    def drivebay(*args: str) -> str:
        command = ["ip", "netns", "exec", netns, sys.executable, "-m", "drivebay.cli.main", "--config", str(config),
                   "--root", str(tmp_path / "client"), *args]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"drivebay {' '.join(args)}: {result.stderr}"
        return result.stdout

    def in_sandbox(*command: str) -> str:
        return subprocess.run(["ip", "netns", "exec", sandbox, *command], capture_output=True, text=True).stdout

    try:
        drivebay("network", "create", "net1", "--subnet", "10.123.0.0/24")
        network = json.loads(drivebay("network", "inspect", "net1", "--json"))
        assert network["subnet"] == "10.123.0.0/24" and network["gateway"] == "10.123.0.1"
        drivebay("network", "connect", "net1", "--netns", f"/run/netns/{sandbox}")
        assert "inet 10.123.0.2/24" in in_sandbox("ip", "-4", "-o", "addr", "show", "eth0")
        assert " 0% packet loss" in in_sandbox("ping", "-c", "1", "-W", "5", "10.123.0.1")
        drivebay("network", "disconnect", "net1", "--netns", f"/run/netns/{sandbox}")
        assert "eth0" not in in_sandbox("ip", "-o", "link")
        drivebay("network", "rm", "net1")
        assert json.loads(drivebay("network", "ls", "--json")) == []
    finally:
        subprocess.run(["ip", "netns", "delete", sandbox], check=False)
