"""The shared tree checker: equal trees compare equal, every field difference is found and named."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from drivebay.testing.treecompare import (
    assert_same_tree,
    compare_trees,
    describe_differences,
    snapshot_tree,
)

MTIME = 1_795_429_638_123_456_789
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, mknod, trusted xattrs)")


def _build(root: Path) -> Path:
    """A small tree with every kind of entry the checker knows; the same bytes every call."""
    root.mkdir()
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "dir" / "file").write_bytes(b"hello\n")
    (root / "dir" / "empty").write_bytes(b"")
    os.link(root / "dir" / "file", root / "hard")
    os.symlink("dir/file", root / "rel")
    os.symlink("/nowhere", root / "dangling")
    os.mkfifo(root / "fifo")
    os.setxattr(root / "dir" / "file", "user.note", b"\x00\xffbinary")
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        os.utime(path, ns=(MTIME, MTIME), follow_symlinks=False)
    os.utime(root, ns=(MTIME, MTIME))
    return root


def _copy(src: Path, dst: Path) -> Path:
    # cp -a keeps hardlinks, xattrs and ns mtimes: an independent way to get an equal tree.
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)
    return dst


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    a = _build(tmp_path / "a")
    return a, _copy(a, tmp_path / "b")


def test_a_copy_compares_equal(pair: tuple[Path, Path]) -> None:
    a, b = pair
    assert compare_trees(a, b) == []
    assert_same_tree(a, b)


def test_snapshot_records_every_kind(pair: tuple[Path, Path]) -> None:
    snap = snapshot_tree(pair[0])
    assert snap["/"].type == "dir"
    assert snap["/dir/file"].size == 6
    assert snap["/dir/file"].hardlinks == ("/hard",)
    assert snap["/hard"].hardlinks == ("/dir/file",)
    assert snap["/rel"].target == "dir/file"
    assert snap["/dangling"].type == "symlink"
    assert snap["/fifo"].type == "fifo"
    assert dict(snap["/dir/file"].xattrs)["user.note"] == b"\x00\xffbinary"
    assert snap["/dir"].mtime == MTIME
    assert snap.paths()[:3] == ["/", "/dangling", "/dir"]


def _chmod(b: Path) -> None:
    os.chmod(b / "dir" / "file", 0o4755)


def _content(b: Path) -> None:
    st = os.stat(b / "dir" / "file")
    (b / "dir" / "file").write_bytes(b"HELLO\n")
    os.utime(b / "dir" / "file", ns=(st.st_atime_ns, st.st_mtime_ns))


def _mtime(b: Path) -> None:
    os.utime(b / "dir" / "empty", ns=(MTIME, MTIME + 1))


def _symlink(b: Path) -> None:
    os.unlink(b / "rel")
    os.symlink("dir/empty", b / "rel")
    os.utime(b / "rel", ns=(MTIME, MTIME), follow_symlinks=False)


def _xattr(b: Path) -> None:
    os.setxattr(b / "dir" / "file", "user.note", b"other")


def _hardlink(b: Path) -> None:
    # Same content and metadata, but no longer the same inode as /dir/file.
    os.unlink(b / "hard")
    shutil.copy2(b / "dir" / "file", b / "hard")


def _type(b: Path) -> None:
    os.unlink(b / "fifo")
    (b / "fifo").write_bytes(b"")


@pytest.mark.parametrize(
    ("change", "path", "field"),
    [
        (_chmod, "/dir/file", "mode"),
        (_content, "/dir/file", "content"),
        (_mtime, "/dir/empty", "mtime"),
        (_symlink, "/rel", "target"),
        (_xattr, "/dir/file", "xattr user.note"),
        (_hardlink, "/dir/file", "hardlinks"),
        (_type, "/fifo", "type"),
    ],
)
def test_each_field_difference_is_named(
    pair: tuple[Path, Path], change: Callable[[Path], None], path: str, field: str
) -> None:
    a, b = pair
    change(b)
    differences = compare_trees(a, b, dir_mtimes=False)
    assert differences, f"changing {field} of {path} went unnoticed"
    assert (differences[0].path, differences[0].field) == (path, field)
    with pytest.raises(AssertionError) as info:
        assert_same_tree(a, b, "driver 'x', layers base -> top", dir_mtimes=False)
    message = str(info.value)
    assert message.startswith("driver 'x', layers base -> top: trees differ")
    assert f"first difference at {path}, field {field}" in message


@needs_root
def test_owner_and_device_numbers_are_compared(pair: tuple[Path, Path]) -> None:
    a, b = pair
    os.mknod(a / "null", 0o20666, os.makedev(1, 3))
    os.mknod(b / "null", 0o20666, os.makedev(1, 5))
    os.lchown(b / "dir" / "empty", 1000, 1000)
    fields = {(d.path, d.field): d for d in compare_trees(a, b, dir_mtimes=False)}
    assert fields[("/null", "rdev")].left == (1, 3)
    assert fields[("/null", "rdev")].right == (1, 5)
    assert ("/dir/empty", "uid") in fields
    assert ("/dir/empty", "gid") in fields


def test_a_missing_directory_is_one_difference(pair: tuple[Path, Path]) -> None:
    a, b = pair
    shutil.rmtree(b / "dir")
    os.unlink(b / "hard")
    differences = compare_trees(a, b, fields=("type",))
    assert [(d.path, d.field, d.left, d.right) for d in differences] == [
        ("/dir", "presence", "dir", "missing"),
        ("/hard", "presence", "file", "missing"),
    ]
    assert "/dir: dir on the left, missing on the right" in describe_differences(differences)


def test_directory_mtimes_can_be_left_out(pair: tuple[Path, Path]) -> None:
    a, b = pair
    os.utime(b / "dir", ns=(MTIME, MTIME + 5))
    assert [d.field for d in compare_trees(a, b)] == ["mtime"]
    assert compare_trees(a, b, dir_mtimes=False) == []


def test_ignore_patterns_and_field_selection(pair: tuple[Path, Path]) -> None:
    a, b = pair
    (b / "lost+found").mkdir()
    os.chmod(b / "dir" / "empty", 0o600)
    assert compare_trees(a, b, ignore=("/lost+found",), fields=("type", "size", "content")) == []
    assert [d.path for d in compare_trees(a, b, ignore=("/lost+found", "/dir/*"), dir_mtimes=False)] == []
    with pytest.raises(ValueError, match="unknown tree fields"):
        compare_trees(a, b, fields=("colour",))


def test_private_overlay_xattrs_are_ignored(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to set trusted.* xattrs")
    a = _build(tmp_path / "a")
    b = _copy(a, tmp_path / "b")
    os.setxattr(b / "dir", "trusted.overlay.opaque", b"y")
    assert compare_trees(a, b) == []


def test_the_report_lists_every_difference_with_values(pair: tuple[Path, Path]) -> None:
    a, b = pair
    _chmod(b)
    _mtime(b)
    report = describe_differences(compare_trees(a, b, dir_mtimes=False), "expected", "layer view")
    assert "first difference at /dir/empty, field mtime: expected has 1795429638123456789" in report
    assert "/dir/file: mode 0644 != 4755" in report
    assert "/hard: mode 0644 != 4755" in report  # the hardlink is the same inode
    assert "3 difference(s) in 3 path(s)" in report
