"""``drivebay plugin serve`` and ``drivebay plugin manifest`` as users run them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from plugin_fixtures import needs_root

from drivebay.dockerplugin.client import PluginClient
from drivebay.dockerplugin.discovery import PluginAddress

DRIVEBAY = [sys.executable, "-m", "drivebay.cli.main"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIVEBAY_")}
    return subprocess.run([*DRIVEBAY, *args], capture_output=True, text=True, env=env, check=False)


@pytest.mark.parametrize(
    ("kind", "types"),
    [
        ("volume", ["docker.volumedriver/1.0"]),
        ("graph", ["docker.graphdriver/1.0"]),
        ("log", ["docker.logdriver/1.0"]),
        ("network", ["docker.networkdriver/1.0", "docker.ipamdriver/1.0"]),
    ],
)
def test_manifest_declares_the_interface_types_of_the_kind(kind: str, types: list[str]) -> None:
    result = run("plugin", "manifest", "--kind", kind, "--driver", "x", "--name", "myplug")
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    assert config["Interface"] == {"Types": types, "Socket": "myplug.sock"}
    entrypoint = config["Entrypoint"]
    assert entrypoint[entrypoint.index("--kind") + 1] == kind
    assert entrypoint[-1] == "/run/docker/plugins/myplug.sock"
    assert ("PropagatedMount" in config) == (kind in ("graph", "volume"))


def test_manifest_writes_a_file(tmp_path: Path) -> None:
    out = tmp_path / "config.json"
    assert run("plugin", "manifest", "--kind", "volume", "--driver", "local", "-o", str(out)).returncode == 0
    assert json.loads(out.read_text())["Interface"]["Socket"] == "drivebay-local.sock"


def test_an_unknown_kind_is_a_usage_error() -> None:
    result = run("plugin", "serve", "--kind", "storage", "--driver", "vfs")
    assert result.returncode == 2 and "invalid choice" in result.stderr


@needs_root
def test_serve_answers_until_sigterm_and_removes_its_socket(
    tmp_path: Path, wait_for: Callable[[Callable[[], bool], float, str], None]
) -> None:
    socket = tmp_path / "vol.sock"
    command = [*DRIVEBAY, "--root", str(tmp_path / "root"), "plugin", "serve", "--kind", "volume", "--driver",
               "local", "--name", "vol", "--socket", str(socket)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: socket.exists() or process.poll() is not None, 30, f"{socket}")
        client = PluginClient("vol", address=PluginAddress("vol", f"unix://{socket}", socket), retry_seconds=0)
        assert client.activate() == ["VolumeDriver"]
        assert client.call("VolumeDriver.Create", {"Name": "v1"}) == {}
        client.close()
        second = run("--root", str(tmp_path / "root2"), "plugin", "serve", "--kind", "volume", "--driver", "local",
                     "--socket", str(socket))
        assert second.returncode == 1 and "another server is listening" in second.stderr
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert f"serving on {socket}" in stderr
    assert not socket.exists()
    assert (tmp_path / "root" / "volumes" / "v1" / "_data").is_dir()
