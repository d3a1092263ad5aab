"""``drivebay volume`` end to end, as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

from volume_fixtures import needs_root

from drivebay.testing.cli import run_drivebay


def test_create_ls_inspect_rm_plain_volume(root: Path) -> None:
    assert run_drivebay(root, "volume", "create", "data").stdout == "data\n"
    listed = json.loads(run_drivebay(root, "volume", "ls", "--json").stdout)
    assert [(v["Name"], v["Driver"], v["Mountpoint"]) for v in listed] == [
        ("data", "local", str(root / "volumes/data/_data"))
    ]
    table = run_drivebay(root, "volume", "ls").stdout.splitlines()
    assert table[0].split() == ["DRIVER", "VOLUME", "NAME", "MOUNTPOINT", "OPTIONS", "CREATED", "USERS"]
    assert table[1].split()[:2] == ["local", "data"]
    inspected = json.loads(run_drivebay(root, "volume", "inspect", "data", "--json").stdout)
    assert inspected["Options"] == {} and inspected["Users"] == {}
    assert run_drivebay(root, "volume", "rm", "data").returncode == 0
    assert json.loads(run_drivebay(root, "volume", "ls", "--json").stdout) == []


@needs_root
def test_mount_unmount_and_rm_in_use(root: Path) -> None:
    created = run_drivebay(
        root, "volume", "create", "cache", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=8m"
    )
    assert created.returncode == 0, created.stderr
    mounted = run_drivebay(root, "volume", "mount", "cache", "--id", "web")
    assert mounted.stdout.strip() == str(root / "volumes/cache/_data")
    refused = run_drivebay(root, "volume", "rm", "cache")
    assert refused.returncode == 1 and "in use by web" in refused.stderr and refused.stderr.count("\n") == 1
    assert json.loads(run_drivebay(root, "volume", "inspect", "cache", "--json").stdout)["Users"] == {"web": 1}
    assert run_drivebay(root, "volume", "unmount", "cache", "--id", "web").returncode == 0
    assert run_drivebay(root, "volume", "rm", "cache").returncode == 0


def test_bad_input_gives_one_line_errors(root: Path) -> None:
    bad_name = run_drivebay(root, "volume", "create", "x")
    assert bad_name.returncode == 2 and "invalid volume name" in bad_name.stderr
    bad_option = run_drivebay(root, "volume", "create", "vol", "-o", "colour=blue")
    assert bad_option.returncode == 1 and "'colour'" in bad_option.stderr
    not_kv = run_drivebay(root, "volume", "create", "vol", "-o", "nonsense")
    assert not_kv.returncode == 2
    assert run_drivebay(root, "volume", "unmount", "ghost", "--id", "a").returncode == 1
