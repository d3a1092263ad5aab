"""drivebay.fs.btrfs on a loop-mounted btrfs made for each test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivebay.errors import BtrfsError
from drivebay.fs import btrfs
from drivebay.fs.backing import backing_filesystem
from drivebay.testing.scratchfs import scratch_filesystem_or_skip, write_random


@pytest.fixture
def fs(tmp_path: Path) -> Iterator[Path]:
    with scratch_filesystem_or_skip("btrfs", size_mb=256, parent=tmp_path) as mount_point:
        yield mount_point


def test_is_btrfs(fs: Path, tmp_path: Path) -> None:
    assert btrfs.is_btrfs(fs)
    assert btrfs.is_btrfs(tmp_path) == (backing_filesystem(tmp_path) == "btrfs")


def test_snapshot_is_a_copy_and_readonly_flag(fs: Path) -> None:
    base = fs / "base"
    btrfs.create_subvolume(base)
    (base / "f").write_text("hello")
    snap = fs / "snap"
    btrfs.snapshot(base, snap, readonly=True)
    assert (snap / "f").read_text() == "hello"
    assert btrfs.is_readonly(snap) and not btrfs.is_readonly(base)
    with pytest.raises(OSError):
        (snap / "g").write_text("no")
    info = btrfs.subvolume_info(snap)
    assert info.parent_uuid == btrfs.subvolume_info(base).uuid
    assert info.readonly
    assert btrfs.subvolume_id(snap) == info.id != btrfs.subvolume_id(base)
    btrfs.set_readonly(snap, False)
    (snap / "g").write_text("yes")
    assert not (base / "g").exists()


def test_delete_removes_nested_subvolumes_even_in_a_readonly_parent(fs: Path) -> None:
    top = fs / "top"
    btrfs.create_subvolume(top)
    (top / "a" / "b").mkdir(parents=True)
    btrfs.create_subvolume(top / "a" / "b" / "n1")
    btrfs.create_subvolume(top / "a" / "b" / "n1" / "n2")
    btrfs.create_subvolume(top / "n3")
    assert sorted(btrfs.child_subvolumes(top)) == [top / "a" / "b" / "n1", top / "n3"]
    btrfs.set_readonly(top, True)
    btrfs.delete_subvolume(top)
    assert not top.exists()
    assert os.listdir(fs) == []


def test_errors_name_the_path(fs: Path) -> None:
    plain = fs / "plain"
    plain.mkdir()
    with pytest.raises(BtrfsError, match="plain"):
        btrfs.snapshot(plain / "missing", fs / "x", readonly=False)
    btrfs.create_subvolume(fs / "dup")
    with pytest.raises(BtrfsError, match="dup"):
        btrfs.create_subvolume(fs / "dup")


def test_quota_limit_stops_writes(fs: Path) -> None:
    vol = fs / "vol"
    btrfs.create_subvolume(vol)
    assert not btrfs.quota_enabled(fs)
    btrfs.enable_quota(fs)
    btrfs.enable_quota(fs)  # idempotent
    assert btrfs.quota_enabled(fs)
    btrfs.set_qgroup_limit(vol, 4 << 20)
    with pytest.raises(OSError) as excinfo:
        write_random(vol / "big", 16 << 20)
    assert excinfo.value.errno == 122  # EDQUOT
    usage = btrfs.qgroup_usage(vol)
    assert usage.limit == 4 << 20
    assert 0 < usage.referenced <= 4 << 20


def test_inode_paths_lists_hard_links(fs: Path) -> None:
    vol = fs / "vol"
    btrfs.create_subvolume(vol)
    (vol / "d").mkdir()
    (vol / "f").write_text("x")
    os.link(vol / "f", vol / "d" / "g")
    inode = os.lstat(vol / "f").st_ino
    assert sorted(btrfs.inode_paths(vol, [inode])[inode]) == ["d/g", "f"]


def test_version() -> None:
    assert btrfs.btrfs_version()


def test_inodes_changed_since_a_snapshot(fs: Path) -> None:
    base = fs / "base"
    btrfs.create_subvolume(base)
    for i in range(2000):
        (base / f"f{i}").write_text("x")
    (base / "d").mkdir()
    btrfs.set_readonly(base, True)
    child = fs / "child"
    btrfs.snapshot(base, child, readonly=False)
    since = btrfs.subvolume_info(child).otransid
    btrfs.sync(child)
    assert btrfs.inodes_changed_since(child, since) == []
    (child / "f1500").write_text("changed")
    (child / "d" / "new").write_text("new")
    btrfs.sync(child)
    changed = btrfs.inodes_changed_since(child, since)
    expected = {os.lstat(child / p).st_ino for p in ("f1500", "d", "d/new")}
    assert expected <= set(changed) <= expected | {btrfs.SUBVOLUME_INODE}
    found = btrfs.inode_paths(child, sorted(expected))
    assert sorted(p for paths in found.values() for p in paths) == ["d", "d/new", "f1500"]


def test_inodes_only_read_are_left_out_given_the_origin(fs: Path) -> None:
    base = fs / "base"
    btrfs.create_subvolume(base)
    for name in ("listed", "read", "changed", "chmodded"):
        (base / name).mkdir()
        (base / name / "f").write_text("x")
    btrfs.set_readonly(base, True)
    child = fs / "child"
    btrfs.snapshot(base, child, readonly=False)
    since = btrfs.subvolume_info(child).otransid
    os.listdir(child / "listed")
    (child / "read" / "f").read_text()
    (child / "changed" / "f").write_text("y")
    (child / "changed" / "f").read_text()  # atime newer than ctime, as for a file only read
    (child / "chmodded").chmod(0o700)
    os.listdir(child / "chmodded")
    btrfs.sync(child)
    inode = {p: os.lstat(child / p).st_ino for p in ("listed", "read/f", "changed/f", "chmodded")}
    everything = set(btrfs.inodes_changed_since(child, since))
    assert set(inode.values()) <= everything
    assert set(btrfs.inodes_changed_since(child, since, origin=base)) == {inode["changed/f"], inode["chmodded"]}


def test_inode_paths_of_a_missing_inode_names_the_subvolume(fs: Path) -> None:
    vol = fs / "vol"
    btrfs.create_subvolume(vol)
    with pytest.raises(BtrfsError, match=f"{vol}.*inode 999999"):
        btrfs.inode_paths(vol, [999_999])


def _snapshot_of(base: Path) -> tuple[Path, int]:
    btrfs.set_readonly(base, True)
    child = base.parent / "child"
    btrfs.snapshot(base, child, readonly=False)
    return child, btrfs.subvolume_info(child).otransid


def test_paths_changed_since_equal_those_of_the_inodes(fs: Path) -> None:
    base = fs / "base"
    btrfs.create_subvolume(base)
    # More directories than the C lookup table's first size, so it grows.
    for d in range(20):
        for s in range(40):
            (base / f"d{d}" / "sub" / str(s)).mkdir(parents=True)
            for i in range(4):
                (base / f"d{d}" / "sub" / str(s) / f"f{i}").write_text("x" * (i * 700))
        for i in range(150):
            (base / f"d{d}" / "sub" / f"f{i}").write_text("x" * (i * 13))
    child, since = _snapshot_of(base)
    for d in range(20):
        for s in range(40):
            (child / f"d{d}" / "sub" / str(s) / f"f{s % 4}").write_text("changed")
    for d in range(0, 20, 3):
        for i in range(0, 150, 7):
            (child / f"d{d}" / "sub" / f"f{i}").write_text("changed")
    os.link(child / "d1" / "sub" / "f1", child / "d2" / "f1-link")
    os.rename(child / "d4", child / "d4-renamed")
    (child / "d5" / "sub" / "f5").chmod(0o600)
    btrfs.sync(child)
    inodes = btrfs.inodes_changed_since(child, since)
    assert btrfs.SUBVOLUME_INODE in inodes  # d4 renamed: the root's entries changed
    inodes.remove(btrfs.SUBVOLUME_INODE)
    expected = [p for paths in btrfs.inode_paths(child, inodes).values() for p in paths]
    paths = btrfs.paths_changed_since(child, since)
    assert sorted(paths) == sorted(["", *expected])
    assert {"d2/f1-link", "d1/sub/f1", "d4-renamed", "d5/sub/f5", "d6/sub/f7"} <= set(paths)


def test_paths_changed_since_for_names_in_leaves_not_written(fs: Path) -> None:
    # 150 long names take more than a 16 KiB leaf, so after a chmod (the inode item written,
    # not its name items) some names are not among the items searched.
    base = fs / "base"
    btrfs.create_subvolume(base)
    (base / "d").mkdir()
    (base / "f").write_text("x")
    links = [f"d/{i:03d}" + "n" * 200 for i in range(150)]
    for link in links:
        os.link(base / "f", base / link)
    child, since = _snapshot_of(base)
    (child / "f").chmod(0o600)
    btrfs.sync(child)
    assert sorted(btrfs.paths_changed_since(child, since)) == sorted(["f", *links])
