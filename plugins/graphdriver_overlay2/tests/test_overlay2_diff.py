"""Native diff: whiteouts and opaque dirs to and from tar, native changes equal to naive ones, fallbacks."""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drivebay import archive
from drivebay.facades.graph import GraphDriver
from drivebay.hookspecs.graph import Change, ChangeKind
from drivebay.testing.graphs import OpenGraph
from drivebay.testing.tars import layer_tar, tar_names
from drivebay.testing.treecompare import assert_same_tree

BASE = {
    "etc/": None,
    "etc/motd": b"hello\n",
    "etc/keep": b"keep\n",
    "data/": None,
    "data/dir/": None,
    "data/dir/a.txt": b"a\n",
    "data/dir/b.txt": b"b\n",
    "usr/": None,
    "usr/share/": None,
    "usr/share/doc/": None,
    "usr/share/doc/README": b"read me\n",
    "usr/share/doc/sub/": None,
    "usr/share/doc/sub/x": b"x\n",
    "deep/": None,
    "deep/a/": None,
    "deep/a/b/": None,
    "deep/a/b/c.txt": b"c\n",
    "link-target": b"t\n",
}


@pytest.fixture
def chain(overlay2: GraphDriver) -> GraphDriver:
    """base (files) <- mid (one more file, so a child's parent view is a real overlay mount)."""
    overlay2.create_from_tar("base", None, io.BytesIO(layer_tar(BASE)))
    overlay2.create_from_tar("mid", "base", io.BytesIO(layer_tar({"etc/": None, "etc/mid": b"mid\n"})))
    return overlay2


def _diff(driver: GraphDriver, layer_id: str, **kwargs: str | None) -> bytes:
    out = io.BytesIO()
    driver.diff(layer_id, out, **kwargs)  # type: ignore[arg-type]
    return out.getvalue()


def _typical_change(root: Path) -> None:
    (root / "etc" / "motd").unlink()
    (root / "etc" / "keep").write_bytes(b"changed\n")
    shutil.rmtree(root / "usr" / "share" / "doc")
    shutil.rmtree(root / "data" / "dir")
    (root / "data" / "dir").mkdir()
    (root / "data" / "dir" / "c.txt").write_bytes(b"c\n")
    (root / "new").mkdir()
    (root / "new" / "file").write_bytes(b"new\n")


@pytest.fixture
def changed(chain: GraphDriver) -> Iterator[GraphDriver]:
    chain.create_rw("c1", "mid")
    with chain.mounted("c1") as root:
        _typical_change(root)
        yield chain


def test_hook_graph_diff_turns_overlay_whiteouts_into_tar_ones(changed: GraphDriver) -> None:
    upper = changed.home / "c1" / "diff"
    assert stat.S_ISCHR(os.lstat(upper / "etc" / "motd").st_mode)
    assert os.getxattr(upper / "data" / "dir", "trusted.overlay.opaque") == b"y"
    data = _diff(changed, "c1")
    names = tar_names(data)
    assert "etc/.wh.motd" in names
    assert "usr/share/.wh.doc" in names
    assert "data/dir/.wh..wh..opq" in names
    assert names.index("data/dir/.wh..wh..opq") < names.index("data/dir/c.txt")
    assert {"etc/keep", "new/file"} <= set(names)
    # Only the upper dir is walked: untouched lower files are not in the tar.
    assert "deep/a/b/c.txt" not in names and "etc/mid" not in names
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            assert not any(key.startswith("SCHILY.xattr.trusted.overlay.") for key in member.pax_headers), member.name
    assert _diff(changed, "c1") == data, "the same layer must give the same bytes"


def test_hook_graph_apply_diff_writes_overlay_whiteouts(changed: GraphDriver) -> None:
    data = _diff(changed, "c1")
    size = changed.create_from_tar("applied", "mid", io.BytesIO(data))
    upper = changed.home / "applied" / "diff"
    whiteout = os.lstat(upper / "etc" / "motd")
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == 0
    assert stat.S_ISCHR(os.lstat(upper / "usr" / "share" / "doc").st_mode)
    assert os.getxattr(upper / "data" / "dir", "trusted.overlay.opaque") == b"y"
    assert not (upper / "data" / "dir" / "a.txt").exists()
    assert size == changed.diff_size("applied") == changed.diff_size("c1")
    with changed.mounted("applied") as applied_root:
        assert not (applied_root / "etc" / "motd").exists()
        assert sorted(os.listdir(applied_root / "data" / "dir")) == ["c.txt"]
        assert_same_tree(changed.get("c1"), applied_root, "c1 vs its diff applied on mid", dir_mtimes=False)
        changed.put("c1")
    # The same tree on the same parent: the same bytes, whiteouts' mtimes included (the same diff ID).
    assert _diff(changed, "applied") == data


def test_apply_to_a_base_layer_deletes_instead_of_leaving_whiteouts(ext4_overlay2: GraphDriver) -> None:
    ext4_overlay2.create_from_tar(
        "base", None, io.BytesIO(layer_tar({"a": b"a", ".wh.gone": None, "d/": None, "d/.wh..wh..opq": None}))
    )
    upper = ext4_overlay2.home / "base" / "diff"
    assert sorted(os.listdir(upper)) == ["a", "d"]
    assert "trusted.overlay.opaque" not in os.listxattr(upper / "d")


def _chmod(root: Path) -> None:
    (root / "etc" / "keep").chmod(0o600)


def _chown(root: Path) -> None:
    os.chown(root / "etc" / "keep", 1000, 1000)


def _xattr(root: Path) -> None:
    os.setxattr(root / "etc" / "keep", "user.note", b"x")


def _delete_file(root: Path) -> None:
    (root / "etc" / "motd").unlink()


def _delete_tree(root: Path) -> None:
    shutil.rmtree(root / "usr" / "share" / "doc")


def _recreate_dir(root: Path) -> None:
    shutil.rmtree(root / "data" / "dir")
    (root / "data" / "dir").mkdir()
    (root / "data" / "dir" / "b.txt").write_bytes(b"b\n")


def _rename_file(root: Path) -> None:
    (root / "etc" / "motd").rename(root / "etc" / "motd.old")


def _rename_dir(root: Path) -> None:
    # Without redirect_dir overlay refuses to rename a lower dir (EXDEV); mv copies, as here.
    shutil.move(root / "usr" / "share" / "doc", root / "usr" / "share" / "documentation")


def _file_to_dir(root: Path) -> None:
    (root / "etc" / "keep").unlink()
    (root / "etc" / "keep").mkdir()
    (root / "etc" / "keep" / "inside").write_bytes(b"i\n")


def _dir_to_file(root: Path) -> None:
    shutil.rmtree(root / "data" / "dir")
    (root / "data" / "dir").write_bytes(b"now a file\n")


def _links(root: Path) -> None:
    (root / "sym").symlink_to("link-target")
    os.link(root / "link-target", root / "hard")


def _touch(root: Path) -> None:
    os.utime(root / "deep" / "a" / "b" / "c.txt", ns=(1, 1))


def _deep_modify(root: Path) -> None:
    (root / "deep" / "a" / "b" / "c.txt").write_bytes(b"C\n")


def _add_deep(root: Path) -> None:
    (root / "deep" / "a" / "b" / "new").mkdir()
    (root / "deep" / "a" / "b" / "new" / "f").write_bytes(b"f")


def _delete_and_restore_same(root: Path) -> None:
    (root / "etc" / "mid").unlink()
    (root / "etc" / "mid").write_bytes(b"mid\n")


def _open_for_write_no_change(root: Path) -> None:
    # Copies the file up, but leaves content and metadata as they were.
    with open(root / "etc" / "keep", "r+b"):
        pass


PATTERNS: dict[str, Callable[[Path], None]] = {
    "typical": _typical_change,
    "chmod": _chmod,
    "chown": _chown,
    "xattr": _xattr,
    "delete-file": _delete_file,
    "delete-tree": _delete_tree,
    "recreate-dir": _recreate_dir,
    "rename-file": _rename_file,
    "rename-dir": _rename_dir,
    "file-to-dir": _file_to_dir,
    "dir-to-file": _dir_to_file,
    "links": _links,
    "touch": _touch,
    "deep-modify": _deep_modify,
    "add-deep": _add_deep,
    "delete-and-restore": _delete_and_restore_same,
    "copy-up-only": _open_for_write_no_change,
}


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_hook_graph_changes_native_equals_naive(chain: GraphDriver, pattern: str) -> None:
    chain.create_rw("c1", "mid")
    with chain.mounted("c1") as root:
        PATTERNS[pattern](root)
        native = chain.changes("c1")
        naive = chain.naive_changes("c1", "mid")
    assert native == naive, f"{pattern}: native {[str(c) for c in native]} != naive {[str(c) for c in naive]}"
    if pattern != "copy-up-only":
        assert native, f"{pattern} changed nothing?"
    # The same holds for a committed layer made from the diff, whose upper dir was written by apply.
    chain.create_from_tar("applied", "mid", io.BytesIO(_diff(chain, "c1")))
    assert chain.changes("applied") == chain.naive_changes("applied", "mid")


def test_typical_changes_match_docker_diff(changed: GraphDriver) -> None:
    assert [str(c) for c in changed.changes("c1")] == [
        "C /data",
        "C /data/dir",
        "D /data/dir/a.txt",
        "D /data/dir/b.txt",
        "A /data/dir/c.txt",
        "C /etc",
        "C /etc/keep",
        "D /etc/motd",
        "A /new",
        "A /new/file",
        "C /usr",
        "C /usr/share",
        "D /usr/share/doc",
    ]


def test_hook_graph_diff_size_counts_changed_files(changed: GraphDriver) -> None:
    assert changed.diff_size("c1") == len(b"changed\n") + len(b"c\n") + len(b"new\n")
    with changed.mounted("c1") as root, changed.mounted("mid") as parent_root:
        naive = archive.changes_size(root, archive.naive_changes(root, parent_root))
    assert changed.diff_size("c1") == naive


def test_diff_against_another_parent_falls_back_to_naive(changed: GraphDriver) -> None:
    hook = changed.loaded.hook
    assert hook.graph_diff(layer_id="c1", parent=None, out=io.BytesIO()) is None
    assert hook.graph_changes(layer_id="c1", parent="base") is None
    assert hook.graph_diff_size(layer_id="c1", parent="base") is None
    names = tar_names(_diff(changed, "c1", parent=None))
    # Against nothing, the whole merged view is the change, lower layers included.
    assert {"deep/a/b/c.txt", "etc/mid", "new/file"} <= set(names)
    assert not any(".wh." in name for name in names)
    assert Change("/etc/mid", ChangeKind.ADD) in changed.changes("c1", parent="base")


def test_redirect_dir_in_the_kernel_selects_naive_diff(open_overlay2: OpenGraph) -> None:
    parameter = Path("/sys/module/overlay/parameters/redirect_dir")
    if not parameter.exists():
        pytest.skip("this kernel's overlay has no redirect_dir parameter")
    before = parameter.read_text().strip()
    if before == "Y":
        pytest.skip("redirect_dir is already on here; the native case can't be tested")
    # The module parameter is global: turn it on only while the driver starts, then put it back.
    parameter.write_text("Y")
    try:
        driver = open_overlay2()
    finally:
        parameter.write_text(before)
    assert dict(driver.status())["Native Overlay Diff"] == "false (the kernel's overlay has redirect_dir on)"
    driver.create_from_tar("base", None, io.BytesIO(layer_tar(BASE)))
    driver.create_rw("c1", "base")
    assert driver.loaded.hook.graph_diff(layer_id="c1", parent="base", out=io.BytesIO()) is None
    assert driver.loaded.hook.graph_changes(layer_id="c1", parent="base") is None
    with driver.mounted("c1") as root:
        _delete_file(root)
    assert [str(c) for c in driver.changes("c1")] == ["C /etc", "D /etc/motd"]
    assert "etc/.wh.motd" in tar_names(_diff(driver, "c1"))
