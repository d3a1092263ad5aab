"""A tree written to a layer tar and applied again is the same tree, byte for byte reproducibly."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest
from test_archive_support import IS_ROOT, needs_root

from drivebay.archive import WhiteoutFormat, apply_layer_tar, write_tree_tar
from drivebay.archive.tarformat import Header, TarReader, encode_header
from drivebay.testing.treecompare import assert_same_tree

LONG = "d" * 60 + "/" + "e" * 70 + "/" + "f" * 90


def make_rich_tree(root: Path) -> None:
    """Every kind of entry a layer can hold; root-only kinds only when root."""
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "dir" / "file.txt").write_bytes(b"hello\n")
    (root / "empty").write_bytes(b"")
    (root / "big.bin").write_bytes(os.urandom(3 << 20))
    (root / "dir" / "hard1").write_bytes(b"shared inode\n")
    os.link(root / "dir" / "hard1", root / "hard2")
    os.link(root / "dir" / "hard1", root / "dir" / "sub" / "hard3")
    os.symlink("dir/file.txt", root / "rel-link")
    os.symlink("/etc/passwd", root / "abs-link")
    os.symlink("x" * 200, root / "long-target-link")
    os.mkfifo(root / "fifo")
    (root / LONG).parent.mkdir(parents=True)
    (root / LONG).write_bytes(b"long name\n")
    (root / "naïve ünïcode").write_bytes(b"utf-8 name\n")
    (root / "suid").write_bytes(b"#!/bin/sh\n")
    os.chmod(root / "suid", 0o4755)
    (root / "sgid-dir").mkdir()
    os.chmod(root / "sgid-dir", 0o2775)
    (root / "sticky").mkdir()
    os.chmod(root / "sticky", 0o1777)
    (root / "private").mkdir(mode=0o700)
    (root / "readonly").write_bytes(b"ro\n")
    os.chmod(root / "readonly", 0o400)
    os.setxattr(root / "dir" / "file.txt", "user.comment", b"a note\x00with nul")
    os.setxattr(root / "dir", "user.dirnote", b"dir")
    if IS_ROOT:
        os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.mknod(root / "loop9", stat.S_IFBLK | 0o660, os.makedev(7, 9))
        os.chown(root / "dir" / "file.txt", 1000, 1001)
        os.chown(root / "dir" / "sub", 123, 456)
        os.lchown(root / "rel-link", 42, 43)
        (root / "bigid").write_bytes(b"big ids\n")
        os.chown(root / "bigid", 3_000_000, 4_000_000)
        os.setxattr(root / "dir" / "file.txt", "trusted.note", b"trusted value")
        # security.capability: cap_net_bind_service+ep, in the kernel's v2 format.
        cap = bytes.fromhex("0000000202000000000000000000000000000000")
        (root / "capable").write_bytes(b"\x7fELF")
        os.setxattr(root / "capable", "security.capability", cap)
    # Distinct nanosecond mtimes, set last (creating children changes a dir's mtime).
    for index, path in enumerate(sorted(root.rglob("*"), reverse=True)):
        os.utime(path, ns=(1, 1_700_000_000_123_456_789 + index * 1_000_003), follow_symlinks=False)


def tar_bytes(root: Path, whiteouts: WhiteoutFormat = WhiteoutFormat.DELETE) -> bytes:
    out = io.BytesIO()
    write_tree_tar(out, root, whiteouts)
    return out.getvalue()


def member_names(data: bytes) -> list[str]:
    reader = TarReader(io.BytesIO(data))
    names = []
    while (hdr := reader.next()) is not None:
        names.append(hdr.name)
    return names


def test_round_trip_restores_every_kind_of_entry(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    make_rich_tree(src)
    data = tar_bytes(src)
    size = apply_layer_tar(io.BytesIO(data), dst, WhiteoutFormat.DELETE)
    assert_same_tree(src, dst, "tree -> tar -> apply", ignore=("/",), labels=("source", "applied"))
    regular = {(st.st_ino, st.st_size) for p in src.rglob("*") if stat.S_ISREG((st := p.lstat()).st_mode)}
    assert size == sum(s for _, s in regular)
    assert os.stat(dst / "hard2").st_ino == os.stat(dst / "dir" / "hard1").st_ino
    assert os.stat(dst / "dir" / "sub" / "hard3").st_nlink == 3


def test_same_tree_gives_the_same_bytes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    make_rich_tree(src)
    first = tar_bytes(src)
    os.utime(src / "dir" / "file.txt", ns=(5, os.lstat(src / "dir" / "file.txt").st_mtime_ns))  # atime only
    copy = tmp_path / "copy"
    copy.mkdir()
    apply_layer_tar(io.BytesIO(first), copy, WhiteoutFormat.DELETE)
    assert hashlib.sha256(tar_bytes(src)).hexdigest() == hashlib.sha256(first).hexdigest()
    # A copy made in another readdir order, with other inode numbers, tars the same.
    assert hashlib.sha256(tar_bytes(copy)).hexdigest() == hashlib.sha256(first).hexdigest()


def test_member_names_are_sorted_without_dot_prefix_and_dirs_end_in_slash(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("b", "a-b", "a/x", "a/.hidden", "A", "z/"):
        path = src / name
        if name.endswith("/"):
            path.mkdir()
        else:
            path.parent.mkdir(exist_ok=True)
            path.write_text(name)
    names = member_names(tar_bytes(src))
    # Tree order: each directory right before its children, siblings by byte order.
    assert names == ["A", "a/", "a/.hidden", "a/x", "a-b", "b", "z/"]


def test_hardlinks_point_to_the_first_name_in_sorted_order(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "z").write_text("data")
    os.link(src / "z", src / "a")
    reader = TarReader(io.BytesIO(tar_bytes(src)))
    first, second = reader.next(), reader.next()
    assert first is not None and second is not None
    assert (first.name, first.type, first.size) == ("a", b"0", 4)
    assert (second.name, second.type, second.linkname, second.size) == ("z", b"1", "a", 0)


def test_pax_headers_carry_nanoseconds_xattrs_long_names_and_big_ids(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    make_rich_tree(src)
    data = tar_bytes(src)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert LONG in members
    assert members["long-target-link"].linkname == "x" * 200
    assert members["dir/file.txt"].pax_headers["SCHILY.xattr.user.comment"] == "a note\x00with nul"
    assert members["dir/file.txt"].pax_headers["mtime"].startswith("1700000000.")
    if IS_ROOT:
        assert (members["bigid"].uid, members["bigid"].gid) == (3_000_000, 4_000_000)
        assert "SCHILY.xattr.security.capability" in members["capable"].pax_headers
        assert members["null"].isdev() and (members["null"].devmajor, members["null"].devminor) == (1, 3)
    assert all(m.uname == "" and m.gname == "" for m in members.values())
    assert not any(name.startswith("./") for name in members)


def test_gnu_tar_lists_and_extracts_our_tar(tmp_path: Path) -> None:
    if shutil.which("tar") is None:
        pytest.skip("GNU tar is not installed")
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    make_rich_tree(src)
    (tmp_path / "layer.tar").write_bytes(tar_bytes(src))
    subprocess.run(
        ["tar", "--xattrs", "--xattrs-include=*", "-C", str(dst), "-xpf", str(tmp_path / "layer.tar")],
        check=True,
        capture_output=True,
    )
    assert_same_tree(src, dst, "GNU tar extracting our tar", ignore=("/",), fields=("type", "size", "content", "mode"))


def test_big_file_size_uses_pax() -> None:
    hdr = Header(name="huge", type=b"0", size=9 << 30, mtime_ns=1_500_000_000_500_000_000)
    reader = TarReader(io.BytesIO(encode_header(hdr)))
    decoded = reader.next()
    assert decoded is not None
    assert (decoded.size, decoded.mtime_ns) == (9 << 30, 1_500_000_000_500_000_000)


def test_negative_fractional_mtime_round_trips() -> None:
    hdr = Header(name="old", type=b"0", mtime_ns=-1_500_000_000)
    decoded = TarReader(io.BytesIO(encode_header(hdr) + bytes(1024))).next()
    assert decoded is not None and decoded.mtime_ns == -1_500_000_000


@needs_root
def test_apply_restores_owner_of_symlinks_and_devices(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    make_rich_tree(src)
    apply_layer_tar(io.BytesIO(tar_bytes(src)), dst, WhiteoutFormat.DELETE)
    assert (os.lstat(dst / "rel-link").st_uid, os.lstat(dst / "rel-link").st_gid) == (42, 43)
    assert os.getxattr(dst / "capable", "security.capability") == os.getxattr(src / "capable", "security.capability")
    assert os.lstat(dst / "null").st_rdev == os.makedev(1, 3)


def test_existing_paths_are_replaced_by_other_types(tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    (dst / "was-dir" / "deep").mkdir(parents=True)
    (dst / "was-dir" / "deep" / "f").write_text("old")
    (dst / "was-file").write_text("old")
    (dst / "keep-dir").mkdir()
    (dst / "keep-dir" / "old-child").write_text("stays")
    (dst / "hardlinked").write_text("old")
    os.link(dst / "hardlinked", dst / "other-name")
    src = tmp_path / "src"
    (src / "was-file").mkdir(parents=True)
    (src / "was-file" / "inner").write_text("new")
    (src / "was-dir").write_text("now a file")
    (src / "keep-dir").mkdir()
    os.chmod(src / "keep-dir", 0o750)
    (src / "hardlinked").write_text("new content")
    apply_layer_tar(io.BytesIO(tar_bytes(src)), dst, WhiteoutFormat.DELETE)
    assert (dst / "was-dir").read_text() == "now a file"
    assert (dst / "was-file" / "inner").read_text() == "new"
    assert (dst / "keep-dir" / "old-child").read_text() == "stays"
    assert stat.S_IMODE(os.stat(dst / "keep-dir").st_mode) == 0o750
    # Replacing a file never writes through its other hardlinks.
    assert (dst / "other-name").read_text() == "old"
    assert (dst / "hardlinked").read_text() == "new content"


def test_directory_mtimes_are_set_after_their_children(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_text("x")
    os.utime(src / "d", ns=(0, 1_234_567_890_987_654_321))
    dst.mkdir()
    apply_layer_tar(io.BytesIO(tar_bytes(src)), dst, WhiteoutFormat.DELETE)
    assert os.stat(dst / "d").st_mtime_ns == 1_234_567_890_987_654_321
