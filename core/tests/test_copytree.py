"""copy_tree: an exact copy (types, owners, modes, xattrs, ns times, hard links), reflinked where possible."""

from __future__ import annotations

import os
import socket
import stat
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivebay.errors import DriverNotSupported
from drivebay.fs.copytree import copy_method, copy_tree
from drivebay.fs.loopfs import scratch_filesystem
from drivebay.testing.treecompare import assert_same_tree

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="owners, devices and trusted xattrs need root")

# struct vfs_cap_data, revision 2, effective, permitting CAP_NET_BIND_SERVICE (10).
CAPABILITY = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)


def build_rich_tree(root: Path) -> int:
    """Every kind of entry and metadata copy_tree must keep; returns the number of regular files' inodes."""
    (root / "etc").mkdir()
    (root / "etc" / "motd").write_text("hello\n")
    os.chown(root / "etc" / "motd", 1234, 5678)
    (root / "bin").mkdir(mode=0o750)
    tool = root / "bin" / "tool"
    tool.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    os.chown(tool, 1000, 1000)
    os.setxattr(tool, "security.capability", CAPABILITY)
    os.chmod(tool, 0o4755)
    os.link(tool, root / "bin" / "tool-link")
    os.link(tool, root / "etc" / "tool-elsewhere")
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)
    (root / "empty").write_bytes(b"")
    (root / "attrs").write_text("x")
    os.setxattr(root / "attrs", "user.note", b"kept")
    os.setxattr(root / "attrs", "trusted.layer", b"\x00\x01binary")
    os.symlink("etc/motd", root / "motd-link")
    os.symlink("/nowhere/dangling", root / "dangling")
    os.lchown(root / "dangling", 42, 43)
    os.mknod(root / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(root / "loop9", 0o660 | stat.S_IFBLK, os.makedev(7, 9))
    os.mkfifo(root / "fifo", 0o640)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "socket"))
    (root / "deep" / "er" / "est").mkdir(parents=True)
    (root / "deep" / "er" / "est" / "leaf").write_text("leaf\n")
    for n, path in enumerate(sorted(root.rglob("*"), reverse=True)):
        os.utime(path, ns=(1_600_000_000_123_456_789 + n, 1_500_000_000_987_654_321 + n), follow_symlinks=False)
    os.utime(root, ns=(1_400_000_000_000_000_001, 1_400_000_000_000_000_001))
    return 5


@pytest.fixture
def btrfs_mount() -> Iterator[Path]:
    try:
        with scratch_filesystem("btrfs", size_mb=512) as mount_point:
            yield mount_point
    except DriverNotSupported as exc:
        pytest.skip(str(exc))


def test_copy_keeps_everything(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    build_rich_tree(src)
    stats = copy_tree(src, dst)
    assert_same_tree(src, dst, "copy_tree on ext4", labels=("source", "copy"))
    assert os.getxattr(dst / "bin" / "tool", "security.capability") == CAPABILITY, "chown must not drop capabilities"
    assert os.stat(dst / "bin" / "tool").st_mode & stat.S_ISUID
    assert os.stat(dst).st_mtime_ns == 1_400_000_000_000_000_001, "the root's own metadata is copied"
    assert stats.hardlinks == 2
    assert os.stat(dst / "bin" / "tool").st_ino == os.stat(dst / "etc" / "tool-elsewhere").st_ino
    assert os.stat(dst / "bin" / "tool").st_ino != os.stat(src / "bin" / "tool").st_ino


def test_reflinks_on_btrfs(btrfs_mount: Path) -> None:
    src, dst = btrfs_mount / "src", btrfs_mount / "dst"
    src.mkdir()
    regular_inodes = build_rich_tree(src)
    stats = copy_tree(src, dst)
    assert_same_tree(src, dst, "copy_tree on btrfs", labels=("source", "copy"))
    assert (stats.reflinked, stats.copy_file_range, stats.plain) == (regular_inodes, 0, 0)
    assert copy_method(btrfs_mount) == "reflink"


def test_falls_back_across_filesystems(tmp_path: Path) -> None:
    """No reflink between two filesystems; the data still arrives whole by the next method that works."""
    with scratch_filesystem("tmpfs", size_mb=64) as tmpfs:
        src = tmpfs / "src"
        src.mkdir()
        regular_inodes = build_rich_tree(src)
        stats = copy_tree(src, tmp_path / "dst")
        assert_same_tree(src, tmp_path / "dst", "copy_tree tmpfs -> ext4", labels=("source", "copy"))
    assert stats.reflinked == 0
    assert stats.copy_file_range + stats.plain == regular_inodes
    assert stats.bytes == 3 * 1024 * 1024 + 17 + len("hello\n") + len("x") + len("leaf\n")


def test_copy_method_names_what_works(tmp_path: Path) -> None:
    # ext4 has no reflink but copies in the kernel.
    assert copy_method(tmp_path) == "copy_file_range"
    assert list(tmp_path.iterdir()) == [], "the probe leaves nothing behind"


def test_refuses_a_file_as_source(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        copy_tree(tmp_path / "file", tmp_path / "dst")
