"""Diffing a layer leaves its atimes alone (O_NOATIME), so that reading it writes nothing into its inodes."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest

from drivebay.archive import WhiteoutFormat, naive_changes, tree_changes, write_changes_tar, write_tree_tar

OLD = 1_600_000_000
NEW = 1_700_000_000


def stale(path: Path) -> None:
    """An atime older than the mtime: under relatime (and strictatime) the next read writes a new one."""
    os.utime(path, (OLD, NEW), follow_symlinks=False)


def atime(path: Path) -> int:
    return os.lstat(path).st_atime_ns


@pytest.fixture
def layer(tmp_path: Path) -> tuple[Path, Path]:
    """A parent tree and a child with one changed file, every atime stale; skips where reads keep atimes."""
    probe = tmp_path / "probe"
    probe.write_bytes(b"x")
    stale(probe)
    probe.read_bytes()
    if atime(probe) == OLD * 10**9:
        pytest.skip(f"{tmp_path} is mounted so that reads never update atimes (noatime); nothing to prove here")
    parent, child = tmp_path / "parent", tmp_path / "child"
    (parent / "etc" / "sub").mkdir(parents=True)
    (parent / "etc" / "passwd").write_bytes(b"root\n")
    (parent / "etc" / "sub" / "keep").write_bytes(b"keep\n")
    shutil.copytree(parent, child, symlinks=True)
    (child / "etc" / "passwd").write_bytes(b"root and more\n")
    (child / "etc" / "passwd").chmod(0o600)  # a change whatever the mtimes
    for path in [parent, *parent.rglob("*"), child, *child.rglob("*")]:
        stale(path)
    return parent, child


def test_naive_changes_and_their_tar_leave_atimes_alone(layer: tuple[Path, Path]) -> None:
    parent, child = layer
    before = {path: atime(path) for path in [child, *child.rglob("*")]}
    changes = naive_changes(child, parent)
    assert [change.path for change in changes] == ["/etc", "/etc/passwd"]
    write_changes_tar(io.BytesIO(), child, changes)
    write_tree_tar(io.BytesIO(), child, WhiteoutFormat.DELETE)
    tree_changes(child, parent, WhiteoutFormat.OVERLAY)
    assert {path: atime(path) for path in before} == before
