"""The vfs driver through core's facade: full copies, reflinks on btrfs, tars applied in place, sizes on btrfs."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
import subprocess
from pathlib import Path

import pytest
from vfs_testkit import OpenVfs

from drivebay.errors import InvalidConfig, LayerInUse, QuotaNotSupported
from drivebay.facades.graph import GraphDriver
from drivebay.fs import btrfs
from drivebay.testing.tars import layer_tar, tar_names
from drivebay.testing.treecompare import assert_same_tree

MIB = 1024 * 1024


def fill_parent(view: Path) -> None:
    """Entries of every kind, with metadata a copy could lose."""
    (view / "etc").mkdir()
    (view / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    os.chown(view / "etc" / "passwd", 0, 42)
    (view / "bin").mkdir(mode=0o700)
    (view / "bin" / "su").write_bytes(b"\x7fELF" + os.urandom(4096))
    os.chmod(view / "bin" / "su", 0o4755)
    os.link(view / "bin" / "su", view / "bin" / "su-again")
    os.setxattr(view / "etc" / "passwd", "trusted.note", b"kept")
    os.setxattr(view / "etc" / "passwd", "user.note", b"kept too")
    os.symlink("../etc/passwd", view / "bin" / "passwd-link")
    os.mknod(view / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mkfifo(view / "fifo")
    os.utime(view / "etc" / "passwd", ns=(1, 1_234_567_891_234_567_891))


def test_hook_graph_create_child_copies_parent_exactly(vfs: GraphDriver) -> None:
    vfs.create("parent")
    with vfs.mounted("parent") as view:
        fill_parent(view)
    vfs.create_rw("child", "parent")
    parent_view, child_view = vfs.get("parent"), vfs.get("child")
    try:
        assert_same_tree(parent_view, child_view, "vfs child of 'parent'", labels=("parent", "child"))
        (child_view / "etc" / "passwd").write_text("changed\n")
        (child_view / "new").write_text("new\n")
        assert (parent_view / "etc" / "passwd").read_text() == "root:x:0:0::/root:/bin/sh\n", "the copy is independent"
        assert not (parent_view / "new").exists()
    finally:
        vfs.put("parent")
        vfs.put("child")
    assert vfs.changes("child") == sorted(vfs.changes("child"))
    changes = [str(c) for c in vfs.changes("child")]
    assert "C /etc/passwd" in changes and "A /new" in changes
    assert not [c for c in changes if "/bin" in c or c.endswith(("/null", "/fifo"))], changes


def test_hook_graph_create_rw_is_a_writable_copy(vfs: GraphDriver) -> None:
    vfs.create_from_tar("image", None, io.BytesIO(layer_tar({"etc/": None, "etc/os-release": b"ID=test\n"})))
    vfs.create_rw("container", "image")
    with vfs.mounted("container") as view:
        (view / "etc" / "os-release").write_text("ID=changed\n")
        (view / "log").write_text("written\n")
    with vfs.mounted("image") as view:
        assert (view / "etc" / "os-release").read_text() == "ID=test\n"
    assert [r.rw for r in vfs.records()] == [False, True]
    assert {str(c) for c in vfs.changes("container")} >= {"C /etc/os-release", "A /log"}


def test_hook_graph_get_is_the_layer_directory_and_put_mounts_nothing(vfs: GraphDriver) -> None:
    vfs.create("base")
    path = vfs.get("base")
    assert path == (vfs.home / "dir" / "base").absolute()
    assert vfs.mounts("base").mounts[0].source == str(path)
    vfs.put("base")
    assert vfs.metadata("base") == {"Dir": str(path)}
    assert vfs.capabilities.native_diff is False and vfs.capabilities.quota_filesystems == ("btrfs",)


def test_hook_graph_remove_refused_while_mounted_then_deletes_the_directory(vfs: GraphDriver) -> None:
    vfs.create("base")
    vfs.get("base")
    with pytest.raises(LayerInUse):
        vfs.remove("base")
    vfs.put("base")
    vfs.remove("base")
    assert not (vfs.home / "dir" / "base").exists()
    assert not vfs.exists("base")


def test_hook_graph_apply_diff_round_trip_with_deletions(vfs: GraphDriver) -> None:
    parent_size = vfs.create_from_tar(
        "parent",
        None,
        io.BytesIO(
            layer_tar(
                {
                    "keep": b"keep\n",
                    "gone": b"gone\n",
                    "dir/": None,
                    "dir/a": b"a\n",
                    "dir/sub/": None,
                    "dir/sub/b": b"b\n",
                    "opaque/": None,
                    "opaque/old": b"old\n",
                    "link": "keep",
                }
            )
        ),
    )
    assert parent_size == len(b"keep\ngone\na\nb\nold\n")
    size = vfs.create_from_tar(
        "child",
        "parent",
        io.BytesIO(
            layer_tar(
                {
                    ".wh.gone": None,
                    ".wh.dir": None,
                    "opaque/": None,
                    "opaque/.wh..wh..opq": None,
                    "opaque/new": b"new\n",
                    "added": b"added\n",
                }
            )
        ),
    )
    assert size == len(b"new\nadded\n")
    with vfs.mounted("child") as view:
        assert sorted(str(p.relative_to(view)) for p in view.rglob("*")) == [
            "added",
            "keep",
            "link",
            "opaque",
            "opaque/new",
        ], "deletions are carried out and no whiteout is left on disk"
    changes = {str(c) for c in vfs.changes("child")}
    assert {"A /added", "D /dir", "D /gone", "A /opaque/new", "D /opaque/old"} <= changes
    assert not any(c.endswith(("/keep", "/link")) or "/dir/" in c for c in changes), changes
    first, second = io.BytesIO(), io.BytesIO()
    vfs.diff("child", first)
    vfs.diff("child", second)
    assert hashlib.sha256(first.getvalue()).digest() == hashlib.sha256(second.getvalue()).digest()
    names = tar_names(first.getvalue())
    assert ".wh.gone" in names and ".wh.dir" in names and "added" in names
    assert vfs.diff_size("child") == size
    # The diff re-applied on the same parent rebuilds the same tree.
    first.seek(0)
    vfs.create_from_tar("again", "parent", first)
    with vfs.mounted("child") as view, vfs.mounted("again") as again:
        # The layer roots were made by the driver at different times; the tar does not carry them.
        assert_same_tree(view, again, "vfs: child vs its diff re-applied", labels=("child", "again"), ignore=["/"])


def test_hook_graph_diff_size_and_changes_against_nothing(vfs: GraphDriver) -> None:
    vfs.create_from_tar("base", None, io.BytesIO(layer_tar({"a": b"12345", "d/": None, "d/b": b"678"})))
    assert vfs.diff_size("base", parent=None) == 8
    assert [str(c) for c in vfs.changes("base", parent=None)] == ["A /a", "A /d", "A /d/b"]


def test_size_is_refused_where_it_cannot_be_enforced(vfs: GraphDriver, open_vfs: OpenVfs) -> None:
    vfs.create("base")
    with pytest.raises(QuotaNotSupported) as info:
        vfs.create_rw("limited", "base", {"size": "50M"})
    message = str(info.value)
    assert "layer 'limited'" in message and "ext4" in message and "btrfs" in message and "CONFIG_QUOTA" in message
    assert not vfs.exists("limited") and not (vfs.home / "dir" / "limited").exists()
    with pytest.raises(QuotaNotSupported):
        open_vfs(options={"size": "1G"})


def test_unknown_and_bad_options(vfs: GraphDriver, open_vfs: OpenVfs) -> None:
    with pytest.raises(InvalidConfig, match="no per-layer option 'colour'"):
        vfs.create("x", None, {"colour": "blue"})
    with pytest.raises(InvalidConfig, match="no driver option mountopt"):
        open_vfs(options={"mountopt": "nodev"})
    with pytest.raises(InvalidConfig, match="'lots' is not a size"):
        vfs.create("y", None, {"size": "lots"})


def free_bytes(path: Path) -> int:
    btrfs.sync(path)
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def test_a_child_of_a_200mb_layer_shares_extents_on_btrfs(open_vfs: OpenVfs) -> None:
    driver = open_vfs("btrfs")
    driver.create("big")
    with driver.mounted("big") as view, open(view / "blob", "wb") as f:
        for _ in range(200):
            f.write(os.urandom(MIB))
    before = free_bytes(driver.home)
    driver.create_rw("child", "big")
    used = before - free_bytes(driver.home)
    assert used < 8 * MIB, f"a 200 MiB child used {used} bytes: the copy was not reflinked"
    child_blob = driver.get("child") / "blob"
    try:
        report = subprocess.run(["filefrag", "-v", str(child_blob)], capture_output=True, text=True, check=True).stdout
    finally:
        driver.put("child")
    assert "shared" in report, f"filefrag shows no shared extents:\n{report}"
    assert ("Copy Method", "reflink") in driver.status()


def test_size_limit_on_btrfs_is_a_qgroup(open_vfs: OpenVfs) -> None:
    driver = open_vfs("btrfs")
    driver.create_from_tar("base", None, io.BytesIO(layer_tar({"hello": b"hello\n"})))
    driver.create_rw("limited", "base", {"size": "20M"})
    facts = driver.metadata("limited")
    assert facts["SizeLimit"] == str(20 * MIB)
    with driver.mounted("limited") as view:
        assert (view / "hello").read_text() == "hello\n", "the parent's files are copied into the subvolume"
        with pytest.raises(OSError) as info, open(view / "big", "wb") as f:
            for _ in range(40):
                f.write(os.urandom(MIB))
                f.flush()
                os.fsync(f.fileno())
        assert info.value.errno in (errno.EDQUOT, errno.ENOSPC)
    driver.remove("limited")
    assert sorted(p.name for p in (driver.home / "dir").iterdir()) == ["base"]
