"""``drivebay volume`` end to end, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from volume_fixtures import needs_root


def drivebay(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "drivebay.cli.main", "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_create_ls_inspect_rm_plain_volume(root: Path) -> None:
    assert drivebay(root, "volume", "create", "data").stdout == "data\n"
    listed = json.loads(drivebay(root, "volume", "ls", "--json").stdout)
    assert [(v["Name"], v["Driver"], v["Mountpoint"]) for v in listed] == [
        ("data", "local", str(root / "volumes/data/_data"))
    ]
    table = drivebay(root, "volume", "ls").stdout.splitlines()
    assert table[0].split() == ["DRIVER", "VOLUME", "NAME", "MOUNTPOINT", "OPTIONS", "CREATED", "USERS"]
    assert table[1].split()[:2] == ["local", "data"]
    inspected = json.loads(drivebay(root, "volume", "inspect", "data", "--json").stdout)
    assert inspected["Options"] == {} and inspected["Users"] == {}
    assert drivebay(root, "volume", "rm", "data").returncode == 0
    assert json.loads(drivebay(root, "volume", "ls", "--json").stdout) == []


@needs_root
def test_mount_unmount_and_rm_in_use(root: Path) -> None:
    created = drivebay(root, "volume", "create", "cache", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=8m")
    assert created.returncode == 0, created.stderr
    mounted = drivebay(root, "volume", "mount", "cache", "--id", "web")
    assert mounted.stdout.strip() == str(root / "volumes/cache/_data")
    refused = drivebay(root, "volume", "rm", "cache")
    assert refused.returncode == 1 and "in use by web" in refused.stderr and refused.stderr.count("\n") == 1
    assert json.loads(drivebay(root, "volume", "inspect", "cache", "--json").stdout)["Users"] == {"web": 1}
    assert drivebay(root, "volume", "unmount", "cache", "--id", "web").returncode == 0
    assert drivebay(root, "volume", "rm", "cache").returncode == 0


def test_bad_input_gives_one_line_errors(root: Path) -> None:
    bad_name = drivebay(root, "volume", "create", "x")
    assert bad_name.returncode == 2 and "invalid volume name" in bad_name.stderr
    bad_option = drivebay(root, "volume", "create", "vol", "-o", "colour=blue")
    assert bad_option.returncode == 1 and "'colour'" in bad_option.stderr
    not_kv = drivebay(root, "volume", "create", "vol", "-o", "nonsense")
    assert not_kv.returncode == 2
    assert drivebay(root, "volume", "unmount", "ghost", "--id", "a").returncode == 1
