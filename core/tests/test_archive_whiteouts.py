"""Whiteouts and opaque directories: applied in each on-disk format, written back, and diffed."""

from __future__ import annotations

import io
import os
import shutil
import stat
from pathlib import Path

import pytest
from test_archive_support import Member, OverlayMount, build_tar, needs_root

from drivebay.archive import (
    WhiteoutFormat,
    apply_layer_tar,
    changes_size,
    naive_changes,
    tree_changes,
    write_changes_tar,
    write_tree_tar,
)
from drivebay.archive.tarformat import TarReader
from drivebay.hookspecs.graph import Change, ChangeKind

LAYER = build_tar(
    Member("etc/", kind="dir", mode=0o755),
    Member("etc/.wh.motd"),
    Member("usr/", kind="dir", mode=0o755),
    Member("usr/.wh.doc"),
    Member("data/", kind="dir", mode=0o755),
    Member("data/.wh..wh..opq", mode=0o755),
    Member("data/new.txt", data=b"new\n"),
    Member(".wh..wh.plnk/", kind="dir"),
)


def lower_tree(root: Path) -> None:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "motd").write_text("welcome\n")
    (root / "etc" / "passwd").write_text("root\n")
    (root / "usr" / "doc" / "deep").mkdir(parents=True)
    (root / "usr" / "doc" / "deep" / "README").write_text("doc\n")
    (root / "data").mkdir()
    (root / "data" / "old.txt").write_text("old\n")
    (root / "data" / "olddir").mkdir()


def members(data: bytes) -> list[tuple[str, bytes, int]]:
    reader = TarReader(io.BytesIO(data))
    out = []
    while (hdr := reader.next()) is not None:
        out.append((hdr.name, hdr.type, hdr.mode))
    return out


def test_delete_format_really_deletes(tmp_path: Path) -> None:
    lower_tree(tmp_path)
    apply_layer_tar(io.BytesIO(LAYER), tmp_path, WhiteoutFormat.DELETE)
    assert not (tmp_path / "etc" / "motd").exists()
    assert (tmp_path / "etc" / "passwd").exists()
    assert not (tmp_path / "usr" / "doc").exists()
    assert sorted(os.listdir(tmp_path / "data")) == ["new.txt"]
    assert not (tmp_path / ".wh..wh.plnk").exists()


def test_delete_format_opaque_keeps_children_from_the_same_tar(tmp_path: Path) -> None:
    lower_tree(tmp_path)
    # The marker comes after a child here; the child of this tar must survive it.
    layer = build_tar(
        Member("data/", kind="dir"),
        Member("data/-first.txt", data=b"from this layer"),
        Member("data/.wh..wh..opq"),
    )
    apply_layer_tar(io.BytesIO(layer), tmp_path, WhiteoutFormat.DELETE)
    assert sorted(os.listdir(tmp_path / "data")) == ["-first.txt"]


@needs_root
def test_overlay_format_makes_char_devices_and_opaque_xattr(tmp_path: Path) -> None:
    apply_layer_tar(io.BytesIO(LAYER), tmp_path, WhiteoutFormat.OVERLAY)
    for path in (tmp_path / "etc" / "motd", tmp_path / "usr" / "doc"):
        st = os.lstat(path)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0, path
    assert os.getxattr(tmp_path / "data", "trusted.overlay.opaque") == b"y"
    assert sorted(os.listdir(tmp_path / "data")) == ["new.txt"]
    assert not (tmp_path / ".wh..wh.plnk").exists()


def test_aufs_format_keeps_marker_files(tmp_path: Path) -> None:
    apply_layer_tar(io.BytesIO(LAYER), tmp_path, WhiteoutFormat.AUFS)
    assert (tmp_path / "etc" / ".wh.motd").is_file()
    assert (tmp_path / "usr" / ".wh.doc").is_file()
    assert (tmp_path / "data" / ".wh..wh..opq").is_file()
    assert not (tmp_path / ".wh..wh.plnk").exists()


@pytest.mark.parametrize("fmt", [WhiteoutFormat.OVERLAY, WhiteoutFormat.AUFS])
def test_on_disk_whiteouts_are_written_back_as_tar_whiteouts(tmp_path: Path, fmt: WhiteoutFormat) -> None:
    if fmt is WhiteoutFormat.OVERLAY and os.geteuid() != 0:
        pytest.skip("overlay whiteouts are char devices and trusted.* xattrs: needs root")
    apply_layer_tar(io.BytesIO(LAYER), tmp_path, fmt)
    out = io.BytesIO()
    write_tree_tar(out, tmp_path, fmt)
    names = [name for name, _, _ in members(out.getvalue())]
    assert names == [
        "data/",
        "data/.wh..wh..opq",
        "data/new.txt",
        "etc/",
        "etc/.wh.motd",
        "usr/",
        "usr/.wh.doc",
    ]
    assert all(typeflag == b"0" for name, typeflag, _ in members(out.getvalue()) if ".wh." in name)


def test_changes_tar_has_parents_and_one_whiteout_per_deleted_tree(tmp_path: Path) -> None:
    parent, layer = tmp_path / "parent", tmp_path / "layer"
    lower_tree(parent)
    shutil.copytree(parent, layer, symlinks=True)
    shutil.rmtree(layer / "usr" / "doc")
    (layer / "data" / "sub").mkdir()
    (layer / "data" / "sub" / "f").write_text("12345")
    changes = naive_changes(layer, parent)
    assert changes == sorted(
        [
            Change("/data", ChangeKind.MODIFY),
            Change("/data/sub", ChangeKind.ADD),
            Change("/data/sub/f", ChangeKind.ADD),
            Change("/usr", ChangeKind.MODIFY),
            Change("/usr/doc", ChangeKind.DELETE),
        ]
    )
    assert changes_size(layer, changes) == 5
    out = io.BytesIO()
    write_changes_tar(out, layer, changes)
    assert [name for name, _, _ in members(out.getvalue())] == [
        "data/",
        "data/sub/",
        "data/sub/f",
        "usr/",
        "usr/.wh.doc",
    ]
    applied = tmp_path / "applied"
    shutil.copytree(parent, applied, symlinks=True)
    apply_layer_tar(io.BytesIO(out.getvalue()), applied, WhiteoutFormat.DELETE)
    assert naive_changes(applied, layer) == []


def test_naive_changes_sees_metadata_only_edits_without_sleeping(tmp_path: Path) -> None:
    parent, layer = tmp_path / "parent", tmp_path / "layer"
    parent.mkdir()
    for name in ("mode", "xattr", "mtime", "link", "same"):
        (parent / name).write_text(name)
    os.symlink("a", parent / "sym")
    shutil.copytree(parent, layer, symlinks=True)
    os.chmod(layer / "mode", 0o600)
    os.setxattr(layer / "xattr", "user.k", b"v")
    st = os.stat(layer / "mtime")
    os.utime(layer / "mtime", ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    os.unlink(layer / "sym")
    os.symlink("b", layer / "sym")
    os.utime(layer / "sym", ns=(0, os.lstat(parent / "sym").st_mtime_ns), follow_symlinks=False)
    os.utime(layer, ns=(0, os.stat(parent).st_mtime_ns))
    assert [str(c) for c in naive_changes(layer, parent)] == ["C /mode", "C /mtime", "C /sym", "C /xattr"]


def test_file_replaced_by_directory_is_modified_with_added_children(tmp_path: Path) -> None:
    parent, layer = tmp_path / "parent", tmp_path / "layer"
    parent.mkdir()
    (parent / "x").write_text("file")
    layer.mkdir()
    (layer / "x").mkdir()
    (layer / "x" / "y").write_text("child")
    assert [str(c) for c in naive_changes(layer, parent)] == ["C /x", "A /x/y"]


def change_through_merged_view(merged: Path) -> None:
    """Edits a container would make: add, modify, chmod, delete files and trees, recreate a dir."""
    (merged / "etc" / "motd").unlink()
    (merged / "etc" / "passwd").write_text("root\nuser\n")
    shutil.rmtree(merged / "usr" / "doc")
    shutil.rmtree(merged / "data")
    (merged / "data").mkdir()
    (merged / "data" / "c.txt").write_text("new\n")
    (merged / "newdir" / "inner").mkdir(parents=True)
    (merged / "newdir" / "inner" / "f").write_text("f")
    os.chmod(merged / "etc", 0o750)
    (merged / "tmpfile").write_text("x")
    (merged / "tmpfile").unlink()  # created and deleted: no change at all


@needs_root
def test_overlay_upper_changes_equal_naive_changes_of_merged_view(overlay_mount: OverlayMount) -> None:
    lower_tree(overlay_mount.lower)
    overlay_mount.mount()
    change_through_merged_view(overlay_mount.merged)
    naive = naive_changes(overlay_mount.merged, overlay_mount.lower)
    native = tree_changes(overlay_mount.upper, overlay_mount.lower, WhiteoutFormat.OVERLAY)
    assert native == naive
    assert [str(c) for c in naive] == [
        "C /data",
        "A /data/c.txt",
        "D /data/old.txt",
        "D /data/olddir",
        "C /etc",
        "D /etc/motd",
        "C /etc/passwd",
        "A /newdir",
        "A /newdir/inner",
        "A /newdir/inner/f",
        "C /usr",
        "D /usr/doc",
    ]
    assert changes_size(overlay_mount.upper, native) == changes_size(overlay_mount.merged, naive)
    # The upper dir, whiteouts converted, is a layer tar that recreates the merged view.
    out = io.BytesIO()
    write_tree_tar(out, overlay_mount.upper, WhiteoutFormat.OVERLAY)
    overlay_mount.unmount()
    rebuilt = overlay_mount.work.parent / "rebuilt"
    shutil.copytree(overlay_mount.lower, rebuilt, symlinks=True)
    overlay_mount.mount()
    apply_layer_tar(io.BytesIO(out.getvalue()), rebuilt, WhiteoutFormat.DELETE)
    assert naive_changes(rebuilt, overlay_mount.merged) == []


def test_aufs_upper_changes_equal_naive_changes(tmp_path: Path) -> None:
    parent, upper, merged = tmp_path / "parent", tmp_path / "upper", tmp_path / "merged"
    lower_tree(parent)
    shutil.copytree(parent, merged, symlinks=True)
    change_through_merged_view(merged)
    # The aufs branch holding the same edits: copied-up and new entries, .wh. files, an opaque marker.
    upper.mkdir()
    shutil.copytree(merged / "data", upper / "data", symlinks=True)
    shutil.copytree(merged / "newdir", upper / "newdir", symlinks=True)
    (upper / "etc").mkdir()
    shutil.copy2(merged / "etc" / "passwd", upper / "etc" / "passwd")
    (upper / "etc" / ".wh.motd").write_text("")
    (upper / "data" / ".wh..wh..opq").write_text("")
    (upper / "usr").mkdir()
    (upper / "usr" / ".wh.doc").write_text("")
    (upper / "usr" / ".wh.never-existed").write_text("")
    (upper / ".wh..wh.plnk").mkdir()
    for rel in ("etc", "data", "usr"):
        shutil.copystat(merged / rel, upper / rel)
    assert tree_changes(upper, parent, WhiteoutFormat.AUFS) == naive_changes(merged, parent)


def test_new_hardlink_to_a_parent_file_keeps_both_names_linked(tmp_path: Path) -> None:
    parent, layer = tmp_path / "parent", tmp_path / "layer"
    parent.mkdir()
    (parent / "a.txt").write_text("shared")
    (parent / "keep").write_text("old")
    os.link(parent / "keep", parent / "lost-link")
    shutil.copytree(parent, layer, symlinks=True)  # copies: a.txt is a new inode with the same metadata
    for name in ("a.txt", "keep", "lost-link"):
        os.utime(layer / name, ns=(0, os.stat(parent / name).st_mtime_ns))
    os.link(layer / "a.txt", layer / "b.txt")
    os.utime(layer, ns=(0, os.stat(parent).st_mtime_ns))
    changes = naive_changes(layer, parent)
    # keep lost a link (copytree made two inodes): not a change, as in `docker diff`.
    assert [str(c) for c in changes] == ["C /a.txt", "A /b.txt"]
    out = io.BytesIO()
    write_changes_tar(out, layer, changes)
    assert members(out.getvalue()) == [("a.txt", b"0", 0o644), ("b.txt", b"1", 0o644)]
