"""Hostile layer tars are refused with UnsafeArchive and write nothing outside the layer root."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from test_archive_support import Member, build_tar, needs_root

from drivebay.archive import WhiteoutFormat, apply_layer_tar
from drivebay.archive.tarformat import Header, encode_header
from drivebay.errors import ArchiveIOError, InvalidArchive, UnsafeArchive
from drivebay.testing.treecompare import snapshot_tree


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """``root`` to apply into, inside ``tmp_path``, and ``outside``, a sibling with a sentinel file."""
    root = tmp_path / "layers" / "root"
    root.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "sentinel").write_text("untouched")
    return root, outside


HOSTILE = {
    "dotdot": (Member("../outside/x", data=b"escaped"),),
    "dotdot-deep": (Member("a/", kind="dir"), Member("a/../../outside/x", data=b"escaped")),
    "absolute": (Member("/etc/drivebay-archive-test", data=b"escaped"),),
    "symlink-parent-in-tar": (
        Member("a", kind="symlink", target="/tmp/outside"),
        Member("a/x", data=b"escaped"),
    ),
    "symlink-parent-relative": (
        Member("a", kind="symlink", target="../../outside"),
        Member("a/x", data=b"escaped"),
    ),
    "symlink-parent-dir-entry": (
        Member("a", kind="symlink", target="../../outside"),
        Member("a/sub/", kind="dir"),
    ),
    "symlink-parent-whiteout": (
        Member("a", kind="symlink", target="../../outside"),
        Member("a/.wh.sentinel"),
    ),
    "whiteout-of-dot": (Member("a/", kind="dir"), Member("a/.wh..")),
    "whiteout-of-dotdot": (Member(".wh..."),),
    "whiteout-of-nothing": (Member(".wh."),),
    "hardlink-absolute": (Member("passwd", kind="hardlink", target="/etc/passwd"),),
    "hardlink-dotdot": (Member("x", kind="hardlink", target="../outside/sentinel"),),
    "hardlink-through-symlink": (
        Member("a", kind="symlink", target="../../outside"),
        Member("x", kind="hardlink", target="a/sentinel"),
    ),
}


@pytest.mark.parametrize("fmt", [WhiteoutFormat.DELETE, WhiteoutFormat.OVERLAY])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_tar_is_refused_and_writes_nothing_outside(
    layout: tuple[Path, Path], case: str, fmt: WhiteoutFormat
) -> None:
    root, outside = layout
    parent = root.parent.parent
    before = snapshot_tree(parent, hash_content=True)
    # The relative symlinks above point from root/a to tmp_path/outside.
    members = tuple(
        Member(m.name, m.kind, m.data, str(outside) if m.target == "/tmp/outside" else m.target) for m in HOSTILE[case]
    )
    with pytest.raises(UnsafeArchive) as info:
        apply_layer_tar(io.BytesIO(build_tar(*members)), root, fmt)
    assert "'" in str(info.value)  # the message names the entry
    after = snapshot_tree(parent, hash_content=True)
    changed = {p for p in set(before.entries) | set(after.entries) if before.entries.get(p) != after.entries.get(p)}
    assert {p for p in changed if not p.startswith("/layers")} == set(), f"{case} wrote outside the layer"
    assert (outside / "sentinel").read_text() == "untouched"
    assert not Path("/etc/drivebay-archive-test").exists()


def test_existing_symlink_in_root_is_not_followed(layout: tuple[Path, Path]) -> None:
    root, outside = layout
    os.symlink(outside, root / "etc")
    with pytest.raises(UnsafeArchive, match=r"'etc/passwd'.*symlink"):
        apply_layer_tar(io.BytesIO(build_tar(Member("etc/passwd", data=b"x"))), root, WhiteoutFormat.DELETE)
    assert sorted(os.listdir(outside)) == ["sentinel"]


def test_symlink_as_last_component_is_replaced_not_followed(layout: tuple[Path, Path]) -> None:
    root, outside = layout
    os.symlink(outside / "sentinel", root / "f")
    apply_layer_tar(io.BytesIO(build_tar(Member("f", data=b"new"))), root, WhiteoutFormat.DELETE)
    assert (root / "f").read_bytes() == b"new" and not (root / "f").is_symlink()
    assert (outside / "sentinel").read_text() == "untouched"


def test_whiteout_of_a_symlink_removes_the_link_only(layout: tuple[Path, Path]) -> None:
    root, outside = layout
    os.symlink(outside, root / "link")
    apply_layer_tar(io.BytesIO(build_tar(Member(".wh.link"))), root, WhiteoutFormat.DELETE)
    assert not os.path.lexists(root / "link")
    assert (outside / "sentinel").read_text() == "untouched"


def test_hardlink_to_a_missing_file_is_invalid(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    with pytest.raises(InvalidArchive, match=r"'x'.*'nothing'"):
        apply_layer_tar(
            io.BytesIO(build_tar(Member("x", kind="hardlink", target="nothing"))), root, WhiteoutFormat.DELETE
        )


def test_garbage_is_not_a_tar(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    with pytest.raises(InvalidArchive, match="checksum"):
        apply_layer_tar(io.BytesIO(b"not a tar" * 100), root, WhiteoutFormat.DELETE)


def test_truncated_tar_is_invalid(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    data = build_tar(Member("f", data=b"x" * 5000))
    with pytest.raises(InvalidArchive, match="truncated"):
        apply_layer_tar(io.BytesIO(data[:2048]), root, WhiteoutFormat.DELETE)


def test_nul_in_a_pax_path_ends_the_name_inside_the_root(layout: tuple[Path, Path]) -> None:
    # Like bsdtar, apply reads a PAX path up to its first NUL; what is left is checked like any name.
    root, _ = layout
    data = encode_header(Header(name="a\x00b" + "c" * 120, type=b"0")) + bytes(1024)
    apply_layer_tar(io.BytesIO(data), root, WhiteoutFormat.DELETE)
    assert os.listdir(root) == ["a"]


@needs_root
def test_driver_xattrs_in_a_tar_are_not_applied(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    hdr = Header(name="f", type=b"0", xattrs={"trusted.overlay.redirect": b"/etc", "user.kept": b"yes"})
    apply_layer_tar(io.BytesIO(encode_header(hdr) + bytes(1024)), root, WhiteoutFormat.OVERLAY)
    assert os.listxattr(root / "f") == ["user.kept"]


def test_symlink_to_a_directory_in_the_way_is_replaced_not_followed(layout: tuple[Path, Path]) -> None:
    root, outside = layout
    os.symlink(outside, root / "f")
    os.symlink(outside, root / "d")
    apply_layer_tar(
        io.BytesIO(build_tar(Member("f", data=b"new"), Member("d", kind="dir"), Member("d/x", data=b"in"))),
        root,
        WhiteoutFormat.DELETE,
    )
    assert (root / "f").read_bytes() == b"new" and not (root / "f").is_symlink()
    assert (root / "d" / "x").read_bytes() == b"in" and not (root / "d").is_symlink()
    assert sorted(os.listdir(outside)) == ["sentinel"]


def test_apply_leaves_the_callers_directory_and_umask_alone(layout: tuple[Path, Path]) -> None:
    # The apply thread changes its own working directory and reads its umask by setting it.
    root, _ = layout
    cwd, umask = os.getcwd(), os.umask(0o027)
    try:
        apply_layer_tar(
            io.BytesIO(build_tar(Member("d/", kind="dir"), Member("d/f", data=b"x"))), root, WhiteoutFormat.DELETE
        )
        assert os.getcwd() == cwd
        assert os.umask(0o027) == 0o027
    finally:
        os.umask(umask)


def test_a_write_the_disk_refuses_is_an_archive_io_error(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    with pytest.raises(ArchiveIOError, match=r"'n{300}'.*too long"):
        apply_layer_tar(io.BytesIO(build_tar(Member("n" * 300, data=b"x"))), root, WhiteoutFormat.DELETE)
