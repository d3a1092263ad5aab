"""The C tar writer gives exactly the bytes the Python writer gave: layer diff IDs never change.

The sha256s below were taken from the Python writer (``LayerTarOutput`` in
writer.py, before the C extension replaced it) on the trees these tests
build. The trees set every field a tar records (mode, owner, nanosecond
mtime, xattrs) so that they are the same on every run and machine.
Independently of those digests, every member of each tar is checked against
``tarformat.encode_header`` of the header ``TarReader`` reads back.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from pathlib import Path

import pytest
from test_archive_support import needs_root

from drivebay.archive import WhiteoutFormat, write_changes_tar, write_tree_tar
from drivebay.archive.tarformat import BLOCK, TarReader, encode_header
from drivebay.hookspecs.graph import Change, ChangeKind

pytestmark = needs_root

# A capability set (cap_net_bind_service+ep) in the kernel's v2 format.
CAPABILITY = bytes.fromhex("0000000202000000000000000000000000000000")
# Times a tar stores in unusual ways: whole seconds (no PAX), before 1970, past USTAR's 11 octal digits.
WHOLE_SECOND_NS = 1_600_000_000_000_000_000
BEFORE_EPOCH_NS = -1_500_000_000
PAST_OCTAL_NS = 9_000_000_000_250_000_000


def _content(index: int, size: int) -> bytes:
    # Deterministic bytes that differ from file to file, without a random source.
    seed = hashlib.sha256(b"%d" % index).digest()
    return (seed * (size // len(seed) + 1))[:size]


def _file(path: Path | bytes, data: bytes, mode: int = 0o644) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)
    os.chmod(path, mode)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fix_times(root: Path, special: dict[Path, int]) -> None:
    """Set every mtime (deepest first, since creating children changes a directory's mtime)."""
    paths = sorted((Path(os.fsdecode(p)) for p in _all_paths(os.fsencode(root))), reverse=True)
    for index, path in enumerate(paths):
        mtime = special.get(path, 1_700_000_000_123_456_789 + index * 1_000_003)
        os.utime(path, ns=(1, mtime), follow_symlinks=False)
    for path, mtime in special.items():
        if os.lstat(path).st_mtime_ns != mtime:
            pytest.skip(f"the test filesystem cannot store the mtime {mtime} ns")


def _all_paths(top: bytes) -> list[bytes]:
    out = []
    for entry in os.scandir(top):
        out.append(entry.path)
        if entry.is_dir(follow_symlinks=False):
            out.extend(_all_paths(entry.path))
    return out


def _set_xattr(path: Path | bytes, name: str, value: bytes) -> None:
    try:
        os.setxattr(path, name, value, follow_symlinks=False)
    except OSError as exc:
        pytest.skip(f"the test filesystem cannot store xattr {name} ({exc.strerror})")


def build_rich_tree(root: Path) -> None:
    """Every kind of entry, name and field a layer holds, in a plain (DELETE format) tree."""
    root.mkdir()
    (root / "dir" / "sub" / "deeper").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    _file(root / "empty", b"")
    _file(root / "dir" / "file.txt", b"hello\n")
    _file(root / "big.bin", _content(1, (3 << 20) + 123))
    _file(root / "exact-block", _content(2, 512))
    _file(root / "one-past-block", _content(3, 513))
    for index in range(300):
        # Enough small files that the 1 MiB buffer is written out between and inside members.
        _file(root / "dir" / "sub" / f"small-{index:03d}", _content(100 + index, (index * 7919) % 9000))
    _file(root / "dir" / "hard1", b"shared inode\n")
    _set_xattr(root / "dir" / "hard1", "user.on-the-inode", b"only the first name carries me")
    os.link(root / "dir" / "hard1", root / "hard2")
    os.link(root / "dir" / "hard1", root / "dir" / "sub" / "deeper" / "hard3")
    os.symlink("dir/file.txt", root / "rel-link")
    os.symlink("/etc/passwd", root / "abs-link")
    os.symlink("x" * 100, root / "target-100")
    os.symlink("y" * 101, root / "target-101")
    os.symlink("z" * 300, root / "target-300")
    os.link(root / "rel-link", root / "rel-link-hardlinked", follow_symlinks=False)
    os.mkfifo(root / "fifo", 0o644)
    os.link(root / "fifo", root / "fifo-hardlinked")
    os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(root / "loop9", stat.S_IFBLK | 0o660, os.makedev(7, 9))
    os.mknod(root / "bigdev", stat.S_IFCHR | 0o600, os.makedev(4095, 0o3777777))  # the largest Linux allows
    os.mknod(root / "socket", stat.S_IFSOCK | 0o755)
    # Names at and around USTAR's 100-byte field, past 255 bytes in all, multibyte and not UTF-8.
    _file(root / ("n" * 100), b"100")
    _file(root / ("o" * 101), b"101")
    (root / ("p" * 200)).mkdir()
    _file(root / ("p" * 200) / ("q" * 200), b"401 bytes of name")
    _file(root / ("é" * 50), b"100 bytes of UTF-8")
    _file(root / ("a" + "é" * 50), b"101 bytes, split inside a character at 100")
    _file(root / "naïve ünïcode ✓", b"utf-8\n")
    _file(os.fsencode(root) + b"/latin1-\xe9t\xe9", b"not UTF-8\n")
    os.mkdir(os.fsencode(root) + b"/dir-\xff\xfe", 0o755)
    _file(os.fsencode(root) + b"/dir-\xff\xfe/inner", b"under a non-UTF-8 directory\n")
    # Sorting is by bytes: these interleave differently as text or with a trailing '/'.
    for name in ("a-b", "a.b", "A", "a0"):
        _file(root / name, name.encode())
    (root / "a").mkdir()
    _file(root / "a" / "x", b"x")
    _file(root / "suid", b"#!/bin/sh\n", 0o4755)
    _file(root / "sgid", b"#!/bin/sh\n", 0o2711)
    _file(root / "no-access", b"root reads me anyway\n", 0o000)
    for name, mode in (("sgid-dir", 0o2775), ("sticky", 0o1777), ("private", 0o700)):
        (root / name).mkdir()
        os.chmod(root / name, mode)
    os.chmod(root / "dir", 0o750)
    for path, uid, gid in (
        (root / "dir" / "file.txt", 1000, 1001),
        (root / "dir" / "sub", 123, 456),
        (root / "bigid", 3_000_000, 4_000_000),
        (root / "uid-7-digits", 0o7777777, 0o7777777),
        (root / "uid-8-digits", 0o10000000, 1),
    ):
        if not path.exists():
            _file(path, b"ids\n")
        os.lchown(path, uid, gid)
    os.lchown(root / "rel-link", 42, 43)
    _set_xattr(root / "dir" / "file.txt", "user.comment", b"a note\x00with nul")
    _set_xattr(root / "dir" / "file.txt", "trusted.note", b"trusted value")
    _set_xattr(root / "dir", "user.dirnote", b"dir")
    _set_xattr(root / "empty-dir", "trusted.overlay.opaque", b"y")  # a driver's own: never written
    _file(root / "capable", b"\x7fELF")
    _set_xattr(root / "capable", "security.capability", CAPABILITY)
    for length in range(75, 95):
        # PAX record lengths crossing from two to three digits.
        _set_xattr(root / "exact-block", f"user.l{length}", b"v" * length)
    _set_xattr(root / "one-past-block", "user.private.secret", b"excluded by the caller")
    _set_xattr(root / "one-past-block", "user.public", b"kept")
    _set_xattr(root / "null", "trusted.dev", b"on a device")
    _set_xattr(root / "abs-link", "trusted.link", b"on a symlink")
    _fix_times(
        root,
        {
            root / "empty": WHOLE_SECOND_NS,
            root / "fifo": BEFORE_EPOCH_NS,
            root / "empty-dir": PAST_OCTAL_NS,
            root / "abs-link": -2_000_000_000_000_000_007,
        },
    )


def build_overlay_upper(root: Path) -> None:
    """An overlay upper directory: char 0/0 whiteouts and opaque directories, at the top too."""
    root.mkdir()
    os.chmod(root, 0o755)
    _set_xattr(root, "trusted.overlay.opaque", b"y")
    (root / "etc").mkdir(mode=0o755)
    os.mknod(root / "etc" / "motd", stat.S_IFCHR | 0o000, 0)
    os.lchown(root / "etc" / "motd", 5, 6)
    os.mknod(root / "etc" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    _file(root / "etc" / ".wh.motd", b"a file that only looks like a whiteout")
    os.mknod(root / "etc" / "-sorts-before", stat.S_IFCHR | 0o000, 0)
    (root / "data").mkdir(mode=0o750)
    os.lchown(root / "data", 77, 88)
    _set_xattr(root / "data", "trusted.overlay.opaque", b"y")
    _set_xattr(root / "data", "user.kept", b"yes")
    _file(root / "data" / "new.txt", b"new\n")
    (root / "data" / "not-opaque").mkdir(mode=0o700)
    _set_xattr(root / "data" / "not-opaque", "trusted.overlay.opaque", b"n")
    _set_xattr(root / "data" / "not-opaque", "trusted.overlay.origin", b"\x00\xfb")
    _set_xattr(root / "data" / "not-opaque", "user.overlay.redirect", b"/x")
    _file(root / "data" / "not-opaque" / "f", b"f", 0o600)
    _set_xattr(root / "data" / "not-opaque" / "f", "user.private.mine", b"excluded")
    _fix_times(root, {})


def build_aufs_branch(root: Path) -> None:
    """An aufs branch: ``.wh.`` files, opaque markers (at the top too) and aufs's own bookkeeping."""
    root.mkdir()
    os.chmod(root, 0o755)
    _file(root / ".wh..wh..opq", b"", 0o444)
    _set_xattr(root / ".wh..wh..opq", "user.on-marker", b"m")
    (root / ".wh..wh.plnk").mkdir(mode=0o700)
    _file(root / ".wh..wh.plnk" / "123.456", b"pseudo link")
    _file(root / ".wh..wh.aufs", b"")
    (root / "usr").mkdir(mode=0o755)
    _file(root / "usr" / ".wh.doc", b"", 0o600)
    _file(root / "usr" / ".wh..wh.orph", b"")
    (root / "usr" / "share").mkdir(mode=0o755)
    _file(root / "usr" / "share" / ".wh..wh..opq", b"", 0o400)
    os.link(root / "usr" / "share" / ".wh..wh..opq", root / "usr" / "share" / "hardlinked-marker")
    _file(root / "usr" / "share" / "readme", b"r" * 1000)
    _set_xattr(root / "usr" / "share" / "readme", "user.private.x", b"excluded")
    _fix_times(root, {})


def build_changed_layer(root: Path) -> list[Change]:
    """A layer directory and its changes against an imagined parent, in no particular order."""
    root.mkdir()
    os.chmod(root, 0o755)
    (root / "etc" / "conf.d").mkdir(parents=True, mode=0o755)
    _file(root / "etc" / "conf.d" / "new.conf", b"k=v\n")
    _file(root / "etc" / "hosts", b"127.0.0.1 localhost\n")
    os.link(root / "etc" / "hosts", root / "etc" / "hosts.bak")
    (root / "srv" / "a" / "b").mkdir(parents=True, mode=0o711)
    _file(root / "srv" / "a" / "b" / "deep", _content(9, 70_000))
    _set_xattr(root / "srv" / "a" / "b" / "deep", "user.why", b"added")
    _set_xattr(root / "srv" / "a", "trusted.overlay.opaque", b"y")
    os.symlink("../etc/hosts", root / "srv" / "hosts")
    os.mknod(root / "srv" / "sock", stat.S_IFSOCK | 0o600)
    (root / "var" / "lib").mkdir(parents=True, mode=0o755)
    _fix_times(root, {root / "etc" / "hosts": WHOLE_SECOND_NS})
    return [
        Change("/srv/a/b/deep", ChangeKind.ADD),
        Change("/etc/hosts.bak", ChangeKind.ADD),
        Change("/etc", ChangeKind.MODIFY),
        Change("/etc/hosts", ChangeKind.MODIFY),
        Change("/etc/conf.d/new.conf", ChangeKind.ADD),
        Change("/var/lib/gone", ChangeKind.DELETE),
        Change("/srv/hosts", ChangeKind.ADD),
        Change("/srv/sock", ChangeKind.ADD),
        Change("/old-tree", ChangeKind.DELETE),
        Change("/", ChangeKind.MODIFY),
    ]


def assert_members_encode_as_tarformat_does(data: bytes) -> None:
    """Each member is ``encode_header`` of what ``TarReader`` reads back, then its data and padding."""
    reader = TarReader(io.BytesIO(data))
    expected = bytearray()
    while (hdr := reader.next()) is not None:
        expected += encode_header(hdr)
        while chunk := reader.read_data(1 << 20):
            expected += chunk
        expected += bytes(-hdr.size % BLOCK)
    expected += bytes(2 * BLOCK)
    assert len(data) == len(expected)
    assert data == bytes(expected)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tree_tar(root: Path, fmt: WhiteoutFormat, exclude: tuple[str, ...] = ()) -> bytes:
    out = io.BytesIO()
    write_tree_tar(out, root, fmt, exclude)
    return out.getvalue()


# Digests of the Python writer's output (commit 8763281) for the trees above.
RICH_DELETE = "799bc7ec9f538ab2dfa4d6b93acc29638981abc1f8a2f401101db2e1f37f1ed8"
RICH_DELETE_EXCLUDING = "77118b1ebe92bb90fdba58e40951a61d8a993f6a98412269b974d692b5334229"
OVERLAY_UPPER = "df2c353c746ddb8f8544e5c4a4f80e7eace9c2be28687828f55238555d3f9774"
OVERLAY_UPPER_AS_PLAIN = "d3995f3079308fb0fa75c7c9ed632b7463d040ea0fd07045efbbaace58e3a801"
AUFS_BRANCH = "06b24c4aad17e7ab15519d622cdad3819c08a9c494d499a7a3404c3a95133a2c"
AUFS_BRANCH_AS_PLAIN = "8849d306ccacb09bd1f2c3388a0ac09c0b67916bf059829de102e6ff603937ef"
CHANGES = "4c76d54bc22d26b5f5f92d4046de1483682eed637e7b2cdecc8eef55c5013797"


def test_rich_tree_gives_the_python_writers_bytes(tmp_path: Path) -> None:
    build_rich_tree(tmp_path / "tree")
    data = _tree_tar(tmp_path / "tree", WhiteoutFormat.DELETE)
    assert_members_encode_as_tarformat_does(data)
    assert _digest(data) == RICH_DELETE
    excluding = _tree_tar(tmp_path / "tree", WhiteoutFormat.DELETE, ("user.private.", "security.capability"))
    assert_members_encode_as_tarformat_does(excluding)
    assert _digest(excluding) == RICH_DELETE_EXCLUDING


def test_overlay_upper_gives_the_python_writers_bytes(tmp_path: Path) -> None:
    build_overlay_upper(tmp_path / "upper")
    data = _tree_tar(tmp_path / "upper", WhiteoutFormat.OVERLAY, ("user.private.",))
    assert_members_encode_as_tarformat_does(data)
    assert _digest(data) == OVERLAY_UPPER
    plain = _tree_tar(tmp_path / "upper", WhiteoutFormat.DELETE)
    assert_members_encode_as_tarformat_does(plain)
    assert _digest(plain) == OVERLAY_UPPER_AS_PLAIN


def test_aufs_branch_gives_the_python_writers_bytes(tmp_path: Path) -> None:
    build_aufs_branch(tmp_path / "branch")
    data = _tree_tar(tmp_path / "branch", WhiteoutFormat.AUFS, ("user.private.",))
    assert_members_encode_as_tarformat_does(data)
    assert _digest(data) == AUFS_BRANCH
    plain = _tree_tar(tmp_path / "branch", WhiteoutFormat.DELETE)
    assert_members_encode_as_tarformat_does(plain)
    assert _digest(plain) == AUFS_BRANCH_AS_PLAIN


def test_changes_tar_gives_the_python_writers_bytes(tmp_path: Path) -> None:
    changes = build_changed_layer(tmp_path / "layer")
    out = io.BytesIO()
    write_changes_tar(out, tmp_path / "layer", changes)
    assert_members_encode_as_tarformat_does(out.getvalue())
    assert _digest(out.getvalue()) == CHANGES


def _member_names(data: bytes) -> list[str]:
    reader = TarReader(io.BytesIO(data))
    names = []
    while (hdr := reader.next()) is not None:
        names.append(hdr.name)
        while reader.read_data(1 << 20):
            pass
    return names


def test_changes_tar_lists_members_in_the_tree_walks_order(tmp_path: Path) -> None:
    # Names around "/" in byte order ("-" and "." sort below it, "0" and "\x01" below "-"),
    # a name that is a prefix of another, and one that is not UTF-8.
    root = tmp_path / "layer"
    names = ["a", "a-b", "a.b", "a0", "a\x01", "ab", os.fsdecode(b"a\xff")]
    for name in names:
        (root / name / "sub").mkdir(parents=True)
        (root / name / "sub" / "f").write_bytes(b"x")
        (root / f"{name}.txt").write_bytes(b"y")
    walked = _member_names(_tree_tar(root, WhiteoutFormat.DELETE))
    out = io.BytesIO()
    # Given deepest first and out of order, with the parents left for the writer to add.
    files = [p for p in walked if not (root / p.rstrip("/")).is_dir()]
    write_changes_tar(out, root, [Change("/" + p, ChangeKind.ADD) for p in reversed(files)])
    assert _member_names(out.getvalue()) == walked
