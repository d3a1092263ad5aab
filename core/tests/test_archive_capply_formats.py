"""The C apply reads every tar dialect a layer comes in: ustar, PAX, GNU; and reads its stream the way callers need."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
from test_archive_support import Member, build_tar, needs_root

from drivebay.archive import WhiteoutFormat, apply_layer_tar
from drivebay.errors import InvalidArchive

LONG_DIR = "d" * 80 + "/" + "e" * 90
LONG_FILE = LONG_DIR + "/" + "f" * 120


def gnu_tar(*infos: tuple[tarfile.TarInfo, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in infos:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return out.getvalue()


def info(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, **fields: object) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.size = size
    member.mtime = 1_700_000_000
    for key, value in fields.items():
        setattr(member, key, value)
    return member


def test_gnu_long_names_and_link_targets(tmp_path: Path) -> None:
    data = gnu_tar(
        (info(LONG_DIR, tarfile.DIRTYPE, mode=0o755), b""),
        (info(LONG_FILE, size=4), b"long"),
        (info("link", tarfile.SYMTYPE, linkname="x" * 150), b""),
        (info("hard", tarfile.LNKTYPE, linkname=LONG_FILE), b""),
    )
    assert b"././@LongLink" in data  # really GNU 'L' / 'K' members
    assert apply_layer_tar(io.BytesIO(data), tmp_path, WhiteoutFormat.DELETE) == 4
    assert (tmp_path / LONG_FILE).read_bytes() == b"long"
    assert os.readlink(tmp_path / "link") == "x" * 150
    assert os.stat(tmp_path / "hard").st_ino == os.stat(tmp_path / LONG_FILE).st_ino


def test_gnu_base256_numbers(tmp_path: Path) -> None:
    # GNU tar stores numbers too big for octal, and negative ones, in base 256.
    data = gnu_tar((info("old", size=1, mtime=-1_000_000, uid=3_000_000, gid=4_000_000), b"x"))
    apply_layer_tar(io.BytesIO(data), tmp_path, WhiteoutFormat.DELETE)
    st = os.lstat(tmp_path / "old")
    assert st.st_mtime_ns == -1_000_000 * 1_000_000_000
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (3_000_000, 4_000_000)


def test_pax_fractional_mtimes_and_ids(tmp_path: Path) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        member = info("f", size=1)
        member.pax_headers = {"mtime": "1700000000.123456789", "uid": "5000000", "gid": "6000000"}
        tar.addfile(member, io.BytesIO(b"x"))
        before_epoch = info("g")
        before_epoch.pax_headers = {"mtime": "-1.25"}
        tar.addfile(before_epoch)
    apply_layer_tar(io.BytesIO(out.getvalue()), tmp_path, WhiteoutFormat.DELETE)
    assert os.lstat(tmp_path / "f").st_mtime_ns == 1_700_000_000_123_456_789
    assert os.lstat(tmp_path / "g").st_mtime_ns == -1_250_000_000
    if os.geteuid() == 0:
        assert (os.lstat(tmp_path / "f").st_uid, os.lstat(tmp_path / "f").st_gid) == (5_000_000, 6_000_000)


def test_pax_global_headers_are_ignored(tmp_path: Path) -> None:
    out = io.BytesIO()
    with tarfile.open(
        fileobj=out, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"comment": "made by git archive"}
    ) as tar:
        tar.addfile(info("f", size=2), io.BytesIO(b"ok"))
    assert out.getvalue()[156:157] == b"g"
    apply_layer_tar(io.BytesIO(out.getvalue()), tmp_path, WhiteoutFormat.DELETE)
    assert os.listdir(tmp_path) == ["f"]


@needs_root
def test_pax_xattrs_are_applied_to_every_kind(tmp_path: Path) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in (info("d", tarfile.DIRTYPE, mode=0o755), info("f"), info("l", tarfile.SYMTYPE, linkname="f")):
            member.pax_headers = {"SCHILY.xattr.trusted.kind": member.name, "SCHILY.xattr.trusted.overlay.x": "y"}
            tar.addfile(member)
    apply_layer_tar(io.BytesIO(out.getvalue()), tmp_path, WhiteoutFormat.DELETE)
    for name in ("d", "f", "l"):
        path = str(tmp_path / name)
        assert os.listxattr(path, follow_symlinks=False) == ["trusted.kind"]
        assert os.getxattr(path, "trusted.kind", follow_symlinks=False) == name.encode()


def test_ustar_prefix_field_is_part_of_the_name(tmp_path: Path) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        tar.addfile(info("p" * 90 + "/" + "n" * 90, size=1), io.BytesIO(b"x"))
    apply_layer_tar(io.BytesIO(out.getvalue()), tmp_path, WhiteoutFormat.DELETE)
    assert (tmp_path / ("p" * 90) / ("n" * 90)).read_bytes() == b"x"


def test_an_old_style_regular_member_ending_in_slash_is_a_directory(tmp_path: Path) -> None:
    block = bytearray(build_tar(Member("d/", kind="dir"))[:512])
    block[156:157] = b"\x00"  # pre-POSIX typeflag: the trailing slash says directory
    block[148:156] = b"        "
    block[148:156] = b"%06o\x00 " % sum(block)
    apply_layer_tar(io.BytesIO(bytes(block) + bytes(1024)), tmp_path, WhiteoutFormat.DELETE)
    assert (tmp_path / "d").is_dir()


def test_unsupported_member_type_is_invalid(tmp_path: Path) -> None:
    block = bytearray(build_tar(Member("f"))[:512])
    block[156:157] = b"V"  # a GNU volume label
    block[148:156] = b"        "
    block[148:156] = b"%06o\x00 " % sum(block)
    with pytest.raises(InvalidArchive, match=r"'f' has unsupported type b'V'"):
        apply_layer_tar(io.BytesIO(bytes(block) + bytes(1024)), tmp_path, WhiteoutFormat.DELETE)


def test_bad_checksum_after_good_members_is_invalid(tmp_path: Path) -> None:
    data = bytearray(build_tar(Member("a", data=b"1"), Member("b", data=b"2")))
    second = 1024  # header of 'b', after 'a' and its one data block
    assert data[second : second + 1] == b"b"
    data[second + 1] ^= 0x40
    with pytest.raises(InvalidArchive, match="bad checksum"):
        apply_layer_tar(io.BytesIO(bytes(data)), tmp_path, WhiteoutFormat.DELETE)
    assert (tmp_path / "a").read_bytes() == b"1"


def test_a_member_cut_in_its_padding_is_truncated(tmp_path: Path) -> None:
    data = build_tar(Member("f", data=b"x" * 100))
    with pytest.raises(InvalidArchive, match="middle of a member"):
        apply_layer_tar(io.BytesIO(data[: 512 + 300]), tmp_path, WhiteoutFormat.DELETE)


def test_a_tar_without_end_blocks_ends_after_its_last_member(tmp_path: Path) -> None:
    data = build_tar(Member("f", data=b"x" * 100))
    assert apply_layer_tar(io.BytesIO(data[:1024]), tmp_path, WhiteoutFormat.DELETE) == 100
    assert (tmp_path / "f").read_bytes() == b"x" * 100


class ReadOnly:
    """A stream with ``read`` but no ``readinto``."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.reads = 0

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        return self._data.read(min(size, 700))


def test_a_stream_without_readinto_is_read_with_read(tmp_path: Path) -> None:
    stream = ReadOnly(build_tar(Member("d/", kind="dir"), Member("d/f", data=b"y" * 5000)))
    assert apply_layer_tar(stream, tmp_path, WhiteoutFormat.DELETE) == 5000  # type: ignore[arg-type]
    assert (tmp_path / "d" / "f").read_bytes() == b"y" * 5000
    assert stream.reads > 10  # short reads, each one a call, to the end
    assert stream.read(10) == b""


class Exploding(io.RawIOBase):
    """Gives ``data`` in small reads, then raises ``error``."""

    def __init__(self, data: bytes, error: BaseException) -> None:
        self._data = data
        self._error = error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if not self._data:
            raise self._error
        n = min(len(buffer), len(self._data), 3000)
        buffer[:n] = self._data[:n]
        self._data = self._data[n:]
        return n


class StreamBroke(Exception):
    """Raised by a test stream, to check that it reaches the caller as it is."""


def test_an_exception_from_the_stream_propagates_unchanged(tmp_path: Path) -> None:
    data = build_tar(Member("a/", kind="dir"), Member("a/f", data=b"z" * 10_000))
    error = StreamBroke("disk cable pulled")
    with pytest.raises(StreamBroke) as caught:
        apply_layer_tar(Exploding(data[:6000], error), tmp_path, WhiteoutFormat.DELETE)  # type: ignore[arg-type]
    assert caught.value is error


def test_whiteouts_must_be_a_whiteout_format(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="WhiteoutFormat"):
        apply_layer_tar(io.BytesIO(b""), tmp_path, "delete")  # type: ignore[arg-type]
