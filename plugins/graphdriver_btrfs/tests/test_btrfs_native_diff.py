"""The diff found from btrfs generation numbers equals core's naive tree comparison, change pattern by pattern."""

from __future__ import annotations

import io
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from drivebay import archive
from drivebay.facades.graph import GraphDriver

Pattern = Callable[[Path], None]


def _image_tree(root: Path) -> None:
    """A small image: nested directories, a hard link, a symlink, a fifo, xattrs, odd owners and modes."""
    for directory in ("etc", "usr/share/doc/pkg/examples", "usr/bin", "data/dir", "var/empty"):
        (root / directory).mkdir(parents=True)
    (root / "etc" / "motd").write_text("welcome\n")
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    for i in range(40):
        (root / "usr" / "share" / "doc" / "pkg" / f"doc{i}").write_text("doc " * i)
    (root / "usr" / "share" / "doc" / "pkg" / "examples" / "ex.sh").write_text("echo hi\n")
    (root / "usr" / "bin" / "tool").write_bytes(b"\x7fELF" + b"\0" * 100)
    os.chmod(root / "usr" / "bin" / "tool", 0o4755)
    (root / "data" / "a.txt").write_text("hello\n")
    os.link(root / "data" / "a.txt", root / "data" / "hard")
    os.symlink("a.txt", root / "data" / "link")
    (root / "data" / "dir" / "b.txt").write_text("bee\n")
    (root / "data" / "owned").write_text("owned\n")
    os.chown(root / "data" / "owned", 1000, 1000)
    os.mkfifo(root / "data" / "fifo")
    os.setxattr(root / "data" / "a.txt", "user.origin", b"image")
    os.utime(root / "data" / "owned", ns=(1_700_000_000_000_000_000, 1_700_000_000_123_456_789))


def _append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


PATTERNS: dict[str, Pattern] = {}


def pattern(name: str) -> Callable[[Pattern], Pattern]:
    def register(function: Pattern) -> Pattern:
        PATTERNS[name] = function
        return function

    return register


@pattern("nothing")
def _nothing(r: Path) -> None:
    pass


@pattern("add file")
def _add_file(r: Path) -> None:
    (r / "etc" / "new.conf").write_text("new\n")


@pattern("add tree")
def _add_tree(r: Path) -> None:
    (r / "opt" / "app" / "lib").mkdir(parents=True)
    (r / "opt" / "app" / "lib" / "x.so").write_text("so")
    (r / "opt" / "app" / "run").write_text("run")


@pattern("modify content")
def _modify(r: Path) -> None:
    _append(r / "etc" / "motd", "more\n")


@pattern("modify deep file")
def _modify_deep(r: Path) -> None:
    _append(r / "usr" / "share" / "doc" / "pkg" / "examples" / "ex.sh", "x")


@pattern("chmod")
def _chmod(r: Path) -> None:
    os.chmod(r / "etc" / "passwd", 0o600)


@pattern("chmod dir")
def _chmod_dir(r: Path) -> None:
    os.chmod(r / "usr" / "share", 0o700)


@pattern("chown")
def _chown(r: Path) -> None:
    os.chown(r / "etc" / "motd", 33, 33)


@pattern("set xattr")
def _set_xattr(r: Path) -> None:
    os.setxattr(r / "etc" / "passwd", "user.note", b"x")


@pattern("change xattr")
def _change_xattr(r: Path) -> None:
    os.setxattr(r / "data" / "a.txt", "user.origin", b"container")


@pattern("remove xattr")
def _remove_xattr(r: Path) -> None:
    os.removexattr(r / "data" / "a.txt", "user.origin")


@pattern("delete file")
def _delete_file(r: Path) -> None:
    os.unlink(r / "etc" / "motd")


@pattern("delete tree")
def _delete_tree(r: Path) -> None:
    shutil.rmtree(r / "usr" / "share" / "doc")


@pattern("delete and recreate dir")
def _recreate_dir(r: Path) -> None:
    shutil.rmtree(r / "data" / "dir")
    (r / "data" / "dir").mkdir()
    (r / "data" / "dir" / "c.txt").write_text("new\n")


@pattern("rename file")
def _rename_file(r: Path) -> None:
    os.rename(r / "etc" / "motd", r / "etc" / "motd.old")


@pattern("rename dir")
def _rename_dir(r: Path) -> None:
    os.rename(r / "usr" / "share" / "doc", r / "usr" / "share" / "documentation")


@pattern("move across dirs")
def _move(r: Path) -> None:
    os.rename(r / "etc" / "passwd", r / "var" / "empty" / "passwd")


@pattern("dirs swapped, a file changed under each")
def _swap_dirs(r: Path) -> None:
    os.rename(r / "etc", r / "swap")
    os.rename(r / "var", r / "etc")
    os.rename(r / "swap", r / "var")
    _append(r / "var" / "motd", "moved")
    (r / "etc" / "empty" / "new").write_text("new")


@pattern("dir moved, a file deep under it changed, the old name made again")
def _move_and_remake(r: Path) -> None:
    os.rename(r / "usr" / "share", r / "usr" / "shared")
    _append(r / "usr" / "shared" / "doc" / "pkg" / "examples" / "ex.sh", "echo again\n")
    (r / "usr" / "share" / "doc" / "pkg" / "examples").mkdir(parents=True)
    (r / "usr" / "share" / "doc" / "pkg" / "examples" / "ex.sh").write_text("echo hi\n")


@pattern("file to dir")
def _file_to_dir(r: Path) -> None:
    os.unlink(r / "etc" / "motd")
    (r / "etc" / "motd").mkdir()
    (r / "etc" / "motd" / "x").write_text("x")


@pattern("dir to file")
def _dir_to_file(r: Path) -> None:
    shutil.rmtree(r / "data" / "dir")
    (r / "data" / "dir").write_text("now a file")


@pattern("add symlink")
def _add_symlink(r: Path) -> None:
    os.symlink("/etc/motd", r / "etc" / "motd.link")


@pattern("retarget symlink")
def _retarget(r: Path) -> None:
    os.unlink(r / "data" / "link")
    os.symlink("dir/b.txt", r / "data" / "link")


@pattern("symlink replaces dir")
def _symlink_for_dir(r: Path) -> None:
    shutil.rmtree(r / "data" / "dir")
    os.symlink("/usr", r / "data" / "dir")


@pattern("add hard link")
def _add_hardlink(r: Path) -> None:
    os.link(r / "etc" / "passwd", r / "etc" / "passwd.bak")


@pattern("modify hard-linked file")
def _modify_hardlinked(r: Path) -> None:
    _append(r / "data" / "hard", "via the other name\n")


@pattern("many long hard links")
def _many_hardlinks(r: Path) -> None:
    # More than the kernel's 4 KiB of names per inode-to-paths call: the paths come from the name items.
    for i in range(150):
        os.link(r / "etc" / "passwd", r / "etc" / f"{i:03d}-{'l' * 200}")
    os.link(r / "etc" / "passwd", r / "data" / "dir" / "passwd")


@pattern("unlink one hard link")
def _unlink_hardlink(r: Path) -> None:
    os.unlink(r / "data" / "hard")


@pattern("same content new mtime")
def _new_mtime(r: Path) -> None:
    os.utime(r / "etc" / "passwd", ns=(1, 1_600_000_000_000_000_000))


@pattern("same content same times")
def _rewrite_same(r: Path) -> None:
    before = os.stat(r / "etc" / "passwd")
    (r / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    os.utime(r / "etc" / "passwd", ns=(before.st_atime_ns, before.st_mtime_ns))


@pattern("same-size overwrite")
def _same_size_overwrite(r: Path) -> None:
    (r / "etc" / "passwd").write_text("toor:x:0:0::/root:/bin/sh\n")


@pattern("truncate shorter")
def _truncate(r: Path) -> None:
    os.truncate(r / "etc" / "motd", 3)


@pattern("truncate longer")
def _truncate_longer(r: Path) -> None:
    os.truncate(r / "etc" / "motd", 5000)


@pattern("rmdir of a dir made in the container")
def _mkdir_rmdir(r: Path) -> None:
    (r / "tmpdir").mkdir()
    (r / "tmpdir").rmdir()


@pattern("file made and removed in the container")
def _create_unlink(r: Path) -> None:
    (r / "data" / "dir" / "scratch").write_text("x")
    os.unlink(r / "data" / "dir" / "scratch")


@pattern("read only")
def _read(r: Path) -> None:
    (r / "etc" / "motd").read_text()
    os.listdir(r / "usr" / "share" / "doc" / "pkg")


@pattern("everything read, then changes read back")
def _read_all_and_changes(r: Path) -> None:
    # Reads write inode items (atime) the native diff must see through; a change read back
    # has an atime newer than its ctime, like a file only read, and must still count.
    for dirpath, _, filenames in os.walk(r):
        for name in filenames:
            path = Path(dirpath, name)
            if path.is_file() and not path.is_symlink():
                path.read_bytes()
    _append(r / "etc" / "motd", "more")
    (r / "etc" / "motd").read_text()
    os.chmod(r / "usr" / "share" / "doc" / "pkg", 0o700)
    os.listdir(r / "usr" / "share" / "doc" / "pkg")
    os.setxattr(r / "etc" / "passwd", "user.read", b"back")
    (r / "etc" / "passwd").read_text()


@pattern("setuid cleared")
def _clear_setuid(r: Path) -> None:
    os.chmod(r / "usr" / "bin" / "tool", 0o755)


@pattern("fifo to file")
def _fifo_to_file(r: Path) -> None:
    os.unlink(r / "data" / "fifo")
    (r / "data" / "fifo").write_text("f")


@pattern("device node")
def _device(r: Path) -> None:
    os.mknod(r / "data" / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))


@pattern("many files")
def _many(r: Path) -> None:
    for i in range(300):
        (r / "var" / "empty" / f"f{i}").write_text(str(i))


@pattern("delete everything")
def _delete_everything(r: Path) -> None:
    for path in list(r.iterdir()):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


TOGETHER = (
    "add tree",
    "modify content",
    "chown",
    "set xattr",
    "change xattr",
    "delete and recreate dir",
    "rename dir",
    "chmod dir",
    "move across dirs",
    "add symlink",
    "retarget symlink",
    "modify hard-linked file",
    "setuid cleared",
    "fifo to file",
    "device node",
    "many files",
)
"""Patterns that touch different paths, so they can be made in one layer."""


def _prepared(graph: GraphDriver) -> None:
    graph.create_rw("fill")
    with graph.mounted("fill") as root:
        _image_tree(root)
    graph.create("image", "fill")


def _assert_native_equals_naive(graph: GraphDriver, layer: str, parent: str) -> None:
    native = graph.loaded.hook.graph_changes(layer_id=layer, parent=parent)
    assert native is not None, "the native method fell back to the naive one"
    naive = graph.naive_changes(layer, parent)
    assert [str(c) for c in native] == [str(c) for c in naive]
    assert graph.loaded.hook.graph_diff_size(layer_id=layer, parent=parent) == graph.diff_size(layer)
    with graph.mounted(layer) as root, graph.mounted(parent) as parent_root:
        expected = io.BytesIO()
        archive.write_changes_tar(expected, root, archive.naive_changes(root, parent_root))
    got = io.BytesIO()
    assert graph.loaded.hook.graph_diff(layer_id=layer, parent=parent, out=got) is True
    assert got.getvalue() == expected.getvalue()


@pytest.mark.parametrize("name", list(PATTERNS))
def test_native_changes_equal_naive_changes(graph: GraphDriver, name: str) -> None:
    _prepared(graph)
    graph.create_rw("container", "image")
    with graph.mounted("container") as root:
        PATTERNS[name](root)
    _assert_native_equals_naive(graph, "container", "image")


def test_all_patterns_at_once_and_a_layer_made_from_the_diff(graph: GraphDriver) -> None:
    _prepared(graph)
    graph.create_rw("container", "image")
    with graph.mounted("container") as root:
        for name in TOGETHER:
            PATTERNS[name](root)
    _assert_native_equals_naive(graph, "container", "image")
    tar = io.BytesIO()
    graph.diff("container", tar)
    tar.seek(0)
    graph.create_from_tar("layer2", "image", tar)
    assert graph.metadata("layer2")["readonly"] == "true"
    _assert_native_equals_naive(graph, "layer2", "image")
    assert graph.changes("layer2") == graph.changes("container")


def test_changes_against_another_layer_fall_back_to_naive(graph: GraphDriver) -> None:
    _prepared(graph)
    graph.create_rw("sibling", "image")
    graph.create_rw("container", "image")
    with graph.mounted("container") as root:
        (root / "new").write_text("x")
    assert graph.loaded.hook.graph_changes(layer_id="container", parent="sibling") is None
    assert graph.loaded.hook.graph_changes(layer_id="container", parent=None) is None
    assert [str(c) for c in graph.changes("container", "sibling")] == ["A /new"]


def test_changes_after_the_parent_was_written_fall_back_to_naive(graph: GraphDriver) -> None:
    graph.create_rw("base")
    graph.create_rw("child", "base")
    with graph.mounted("base") as root:
        (root / "late").write_text("written into the parent after the snapshot")
    assert graph.loaded.hook.graph_changes(layer_id="child", parent="base") is None
    assert [str(c) for c in graph.changes("child")] == ["D /late"]


def test_native_diff_survives_more_snapshots_of_the_parent(graph: GraphDriver) -> None:
    """A second container (and a layer on the first) snapshots the image again; the first's diff stays native."""
    _prepared(graph)
    graph.create_rw("container", "image")
    graph.create_rw("sibling", "image")
    with graph.mounted("container") as root:
        _append(root / "etc" / "motd", "more\n")
        os.unlink(root / "data" / "hard")
    graph.create("snap-of-container", "container")
    _assert_native_equals_naive(graph, "container", "image")
    assert [str(c) for c in graph.changes("container")] == ["C /data", "D /data/hard", "C /etc", "C /etc/motd"]


def test_parent_written_after_a_sibling_snapshot_falls_back_to_naive(graph: GraphDriver) -> None:
    graph.create_rw("base")
    with graph.mounted("base") as root:
        (root / "kept").write_text("in the parent before the snapshots")
    graph.create_rw("child", "base")
    graph.create_rw("sibling", "base")
    with graph.mounted("base") as root:
        os.chmod(root / "kept", 0o600)
    assert graph.loaded.hook.graph_changes(layer_id="child", parent="base") is None
    assert [str(c) for c in graph.changes("child")] == ["C /kept"]


AT_ONCE: dict[str, tuple[Callable[[Path], object], str | None]] = {
    "append": (lambda r: _append(r / "f", "more"), "C /f"),
    "same-size overwrite": (lambda r: (r / "f").write_text("xyz"), None),
    "truncate": (lambda r: os.truncate(r / "f", 1), "C /f"),
    "chmod": (lambda r: os.chmod(r / "f", 0o600), "C /f"),
    "xattr": (lambda r: os.setxattr(r / "f", "user.k", b"v"), "C /f"),
    "unlink": (lambda r: os.unlink(r / "f"), "D /f"),
    "rename": (lambda r: os.rename(r / "f", r / "g"), "A /g"),
    "hard link": (lambda r: os.link(r / "f", r / "g"), "A /g"),
    "rmdir of a new dir": (_mkdir_rmdir, None),
}
"""One change each, with the change that must be among the results (``None``: whatever the naive diff says)."""


@pytest.mark.parametrize("name", list(AT_ONCE))
def test_a_write_right_after_the_snapshot_is_seen(graph: GraphDriver, name: str) -> None:
    """Parent written, sealed, snapshotted and the child written at once, five times over.

    The child's write lands in the same coarse clock tick as the parent's, and
    its data is not on disk yet: btrfs records an appended file's size in its
    inode item only when the data is written out, and a write in the tick of
    the file's last change leaves its times alone. The diff must see it anyway.
    """
    change, expected = AT_ONCE[name]
    for i in range(5):
        graph.create_rw(f"fill{i}")
        with graph.mounted(f"fill{i}") as root:
            (root / "f").write_text("abc")
        graph.create(f"image{i}", f"fill{i}")
        graph.create_rw(f"c{i}", f"image{i}")
        with graph.mounted(f"c{i}") as root:
            change(root)
        _assert_native_equals_naive(graph, f"c{i}", f"image{i}")
        if expected is not None:
            assert expected in [str(c) for c in graph.changes(f"c{i}")]
