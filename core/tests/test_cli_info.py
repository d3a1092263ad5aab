"""``drivebay info``, ``drivebay drivers``, driver selection, config errors and ``--help`` everywhere."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from cli_helpers import make_drivebay

from drivebay.cli.main import build_parser, main
from drivebay.config import load_config_from
from drivebay.errors import DriverNotSupported, DriverRootMismatch
from drivebay.fs.backing import backing_filesystem
from drivebay.loader import KINDS, installed_drivers
from drivebay.selection import choose_graph_driver, probe_all


def test_info_shows_drivers_root_and_status(tmp_path: Path) -> None:
    drivebay = make_drivebay(tmp_path)
    drivebay.run("graph", "create", "one")
    facts = json.loads(drivebay.out("info", "--json"))
    assert facts["root"] == str(drivebay.root)
    assert facts["backing_filesystem"] == backing_filesystem(tmp_path)
    assert facts["config_file"] == str(drivebay.config)
    assert facts["drivers"] == {"graph": "vfs", "volume": "local", "network": "bridge", "log": "json-file"}
    assert facts["storage"]["layers"] == 1
    status = dict(facts["storage"]["status"])
    assert status["Backing Filesystem"] == backing_filesystem(tmp_path)
    assert status["Copy Method"] in ("reflink", "copy_file_range", "read/write")
    text = drivebay.out("info")
    assert "Storage Driver: vfs\n" in text
    assert " Copy Method: " in text and " Layers: 1\n" in text
    assert f"Root: {drivebay.root}\n" in text and "Logging Driver: json-file\n" in text


def test_drivers_lists_every_installed_driver_with_support(tmp_path: Path) -> None:
    drivebay = make_drivebay(tmp_path)
    rows = json.loads(drivebay.out("drivers", "--json"))
    expected = {(kind, d.name) for kind in KINDS for d in installed_drivers(KINDS[kind])}
    assert {(r["kind"], r["name"]) for r in rows} == expected
    vfs = next(r for r in rows if r["name"] == "vfs")
    assert vfs == {
        "kind": "graph",
        "name": "vfs",
        "distribution": "drivebay-graphdriver-vfs",
        "version": "0.1.0",
        "supported": True,
        "reason": None,
    }
    for row in rows:
        assert row["supported"] == (row["reason"] is None), row
    graph_only = json.loads(drivebay.out("drivers", "--kind", "graph", "--json"))
    assert {r["kind"] for r in graph_only} == {"graph"}
    table = drivebay.out("drivers", "--kind", "graph").splitlines()
    assert table[0].split() == ["KIND", "NAME", "DISTRIBUTION", "VERSION", "SUPPORTED"]
    assert any(line.split()[:2] == ["graph", "vfs"] and line.split()[4] == "yes" for line in table[1:])


def test_btrfs_is_not_supported_off_btrfs_and_says_why(tmp_path: Path) -> None:
    if "btrfs" not in {d.name for d in installed_drivers(KINDS["graph"])}:
        pytest.skip("drivebay-graphdriver-btrfs is not installed")
    if backing_filesystem(tmp_path) == "btrfs":
        pytest.skip("the test root is on btrfs")
    reasons = dict((d.name, reason) for d, reason in probe_all(KINDS["graph"], tmp_path / "root"))
    assert reasons["btrfs"] is not None and "btrfs" in reasons["btrfs"]
    with pytest.raises(DriverNotSupported) as info:
        from drivebay.selection import open_graph_driver
        from drivebay.state import StateDB

        config = load_config_from(None, {"root": str(tmp_path / "root"), "storage-driver": "btrfs"}, environ={})
        open_graph_driver(config, StateDB.for_root(config.root))
    assert "'btrfs'" in str(info.value) and reasons["btrfs"] in str(info.value)


def test_auto_selection_follows_priority_and_keeps_a_roots_driver(tmp_path: Path) -> None:
    drivebay = make_drivebay(tmp_path, driver=None)
    config = load_config_from(None, {"root": str(drivebay.root)}, environ={})
    supported = {d.name for d, reason in probe_all(KINDS["graph"], drivebay.root) if reason is None}
    # aufs counts only with a kernel aufs module, which mainline kernels lack.
    kernel_aufs = "aufs" in Path("/proc/filesystems").read_text().split()
    first = next(n for n in ("overlay2", "btrfs", "aufs", "vfs") if n in supported and (n != "aufs" or kernel_aufs))
    assert choose_graph_driver(config) == first
    # A root that already holds vfs layers stays vfs, whatever would be chosen for an empty one.
    drivebay.run("graph", "create", "kept", driver="vfs")
    assert choose_graph_driver(config) == "vfs"
    assert json.loads(drivebay.out("info", "--json"))["drivers"]["graph"] == "vfs"
    assert [r["id"] for r in json.loads(drivebay.out("graph", "ls", "--json"))] == ["kept"]


def test_an_explicit_other_driver_is_refused_on_a_used_root(tmp_path: Path) -> None:
    drivebay = make_drivebay(tmp_path)
    drivebay.run("graph", "create", "kept")
    result = drivebay.run("graph", "ls", driver="overlay2", check=False)
    stderr = result.stderr.decode()
    assert result.returncode == 1 and stderr.count("\n") == 1, stderr
    assert "'vfs'" in stderr and "'overlay2'" in stderr and "--storage-driver vfs" in stderr
    config = load_config_from(None, {"root": str(drivebay.root), "storage-driver": "overlay2"}, environ={})
    with pytest.raises(DriverRootMismatch):
        choose_graph_driver(config)


def test_unknown_driver_and_bad_config_are_one_line(tmp_path: Path) -> None:
    drivebay = make_drivebay(tmp_path)
    result = drivebay.run("info", driver="zfs", check=False)
    assert result.returncode == 1 and result.stderr.count(b"\n") == 1
    assert b"pip install drivebay-graphdriver-zfs" in result.stderr
    drivebay.config.write_text("storage-driver: vfs\nlog-driverr: json-file\n")
    result = drivebay.run("info", check=False)
    assert result.returncode == 1 and result.stderr.count(b"\n") == 1
    assert str(drivebay.config).encode() in result.stderr and b"did you mean 'log-driver'?" in result.stderr


def _command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths.extend(_command_paths(sub, (*prefix, name)))
    return paths


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    paths = _command_paths(build_parser())
    assert ("graph", "diff-size") in paths and ("drivers",) in paths and ("info",) in paths
    for path in paths:
        with pytest.raises(SystemExit) as info:
            main([*path, "--help"])
        assert info.value.code == 0, path
        out = capsys.readouterr().out
        assert out.startswith(f"usage: drivebay {' '.join(path)}".rstrip()), (path, out[:80])


def test_graph_commands_documented_in_design_exist() -> None:
    paths = set(_command_paths(build_parser()))
    names = ("create", "mount", "unmount", "diff", "apply", "changes", "diff-size", "exists", "rm", "ls", "cleanup")
    for name in names:
        assert ("graph", name) in paths, name
