"""Tar-split: a layer tar kept as its headers is rebuilt byte for byte from the applied layer, or is refused.

Every case applies the tar for real, writes its tar-split, and rebuilds the
tar from the applied directory; the rebuilt bytes are compared with the tar.
"""

from __future__ import annotations

import gc
import hashlib
import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from drivebay.archive import RebuiltTar, Split, WhiteoutFormat, apply_layer_tar, write_tar_split
from drivebay.archive.tarsplit import MAGIC
from drivebay.errors import DigestMismatch, DrivebayError, InvalidArchive

MTIME = 1_700_000_000


def member(
    name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **fields: object
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data)
    info.mtime = MTIME
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    for key, value in fields.items():
        setattr(info, key, value)
    return info, data


def make_tar(*members: tuple[tarfile.TarInfo, bytes], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out.getvalue()


def split_of(tar: bytes, tmp_path: Path) -> tuple[Split, Path]:
    path = tmp_path / "layer.tarsplit"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        return write_tar_split(io.BytesIO(tar), fd), path
    finally:
        os.close(fd)


def applied(tar: bytes, tmp_path: Path) -> Path:
    root = tmp_path / "layer"
    root.mkdir()
    apply_layer_tar(io.BytesIO(tar), root, WhiteoutFormat.DELETE)
    return root


def rebuild(split: Path, root: Path, tar: bytes) -> bytes:
    diff_id = "sha256:" + hashlib.sha256(tar).hexdigest()
    with open(split, "rb") as kept, RebuiltTar(kept, root, diff_id, "layer L") as rebuilt:
        data = rebuilt.read()
        rebuilt.verify()
    return data


LONG = "d" * 90 + "/" + "f" * 140
CASES = {
    "ustar": make_tar(
        member("etc", tarfile.DIRTYPE),
        member("etc/passwd", data=b"root:x:0:0\n"),
        member("etc/empty"),
        member("etc/link", tarfile.SYMTYPE, linkname="passwd"),
        member("etc/hard", tarfile.LNKTYPE, linkname="etc/passwd"),
        member("big", data=os.urandom(3 << 20)),
        fmt=tarfile.USTAR_FORMAT,
    ),
    "pax long names, xattrs, nanosecond times": make_tar(
        member("d" * 90, tarfile.DIRTYPE),
        member(LONG, data=b"long name\n" * 100, pax_headers={"SCHILY.xattr.user.k": "v", "mtime": "1700000000.5"}),
        member("odd", data=b"\x00" * 511),
    ),
    "gnu long names": make_tar(
        member("d" * 90, tarfile.DIRTYPE), member(LONG, data=b"gnu\n" * 300), fmt=tarfile.GNU_FORMAT
    ),
    "whiteouts of the parent's paths": make_tar(
        member("etc", tarfile.DIRTYPE),
        member("etc/.wh.motd"),
        member("opt", tarfile.DIRTYPE),
        member("opt/.wh..wh..opq"),
        member("opt/new.txt", data=b"new\n"),
    ),
    "sparse pax data kept as it is": make_tar(
        member("sparse", data=b"map and runs", pax_headers={"GNU.sparse.major": "1", "GNU.sparse.minor": "0"})
    ),
    "aufs metadata with data": make_tar(member(".wh..wh.aufs", data=b"aufs bookkeeping"), member("a", data=b"a")),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_tar_is_rebuilt_byte_for_byte_from_its_applied_layer(tmp_path: Path, name: str) -> None:
    tar = CASES[name]
    root = applied(tar, tmp_path)
    split, path = split_of(tar, tmp_path)
    assert split == Split(len(tar), exact=True)
    assert rebuild(path, root, tar) == tar


def test_the_split_leaves_file_bytes_out(tmp_path: Path) -> None:
    tar = CASES["ustar"]
    _, path = split_of(tar, tmp_path)
    assert path.stat().st_size < len(tar) // 100


def test_bytes_after_the_end_blocks_are_kept(tmp_path: Path) -> None:
    # GNU tar pads to its 10 KiB record; some writers leave more after the end blocks.
    tar = CASES["ustar"] + b"\x00" * 10240 + b"trailing"
    split, path = split_of(tar, tmp_path)
    assert split.size == len(tar)
    assert rebuild(path, applied(tar, tmp_path), tar) == tar


def test_an_empty_stream_is_an_empty_tar(tmp_path: Path) -> None:
    split, path = split_of(b"", tmp_path)
    assert split == Split(0, exact=True)
    assert rebuild(path, applied(b"", tmp_path), b"") == b""


INEXACT = {
    "a path named twice": make_tar(member("a", data=b"first"), member("a", data=b"second")),
    "a whiteout of its own file": make_tar(member("d", tarfile.DIRTYPE), member("d/f", data=b"x"), member("d/.wh.f")),
    "a whiteout of a directory above its own file": make_tar(
        member("d", tarfile.DIRTYPE), member("d/e", tarfile.DIRTYPE), member("d/e/f", data=b"x"), member("d/.wh.e")
    ),
    "a non-directory over a directory above its own file": make_tar(
        member("d/f", data=b"x"), member("d", tarfile.SYMTYPE, linkname="elsewhere")
    ),
    "an opaque directory over a directory the tar did not name": make_tar(
        member("d", tarfile.DIRTYPE), member("d/e/f", data=b"x"), member("d/.wh..wh..opq")
    ),
}


@pytest.mark.parametrize("name", list(INEXACT))
def test_a_tar_that_replaces_its_own_files_is_not_exact(tmp_path: Path, name: str) -> None:
    split, _ = split_of(INEXACT[name], tmp_path)
    assert split.exact is False
    assert split.problem is None


def test_a_malformed_tar_is_read_to_its_end_and_reported(tmp_path: Path) -> None:
    tar = bytearray(CASES["ustar"])
    tar[148:156] = b"0000000\x00"  # the first header's checksum
    stream = io.BytesIO(bytes(tar))
    path = tmp_path / "split"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        split = write_tar_split(stream, fd)
    finally:
        os.close(fd)
    assert isinstance(split.problem, InvalidArchive)
    assert "bad checksum" in str(split.problem)
    assert split.exact is False
    assert stream.tell() == len(tar)


def test_a_changed_file_fails_the_rebuild_naming_the_layer(tmp_path: Path) -> None:
    tar = CASES["ustar"]
    root = applied(tar, tmp_path)
    _, path = split_of(tar, tmp_path)
    (root / "etc" / "passwd").write_bytes(b"ROOT:x:0:0\n")
    with pytest.raises(DigestMismatch, match=r"layer L: the tar rebuilt from the layer's files hashes to sha256:"):
        rebuild(path, root, tar)


@pytest.mark.parametrize(("change", "message"), [("remove", "cannot read file 'big'"), ("shorten", "'big' is shorter")])
def test_a_missing_or_shorter_file_fails_the_rebuild_naming_it(tmp_path: Path, change: str, message: str) -> None:
    tar = CASES["ustar"]
    root = applied(tar, tmp_path)
    _, path = split_of(tar, tmp_path)
    if change == "remove":
        (root / "big").unlink()
    else:
        os.truncate(root / "big", 100)
    with pytest.raises(DigestMismatch, match=message):
        rebuild(path, root, tar)


def test_a_split_without_its_magic_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus"
    bogus.write_bytes(b"not a split")
    with open(bogus, "rb") as kept, pytest.raises(InvalidArchive, match="does not start with"):
        RebuiltTar(kept, tmp_path, "sha256:" + "0" * 64, "layer L")


NESTED = make_tar(
    member("a", tarfile.DIRTYPE),
    member("a/b", tarfile.DIRTYPE),
    member("a/b/secret", data=b"inside\n" * 700),
    member("a/b/empty"),
    member("a/odd", data=os.urandom(513)),
    member("a/link", tarfile.SYMTYPE, linkname="b/secret"),
    member("top", data=os.urandom(5000)),
)


def read_until_error(split: Path, root: Path, tar: bytes, chunk: int) -> tuple[bytes, DrivebayError | None]:
    """What a rebuild produces in ``chunk``-byte reads, and the error that stopped it (None if it verified)."""
    diff_id = "sha256:" + hashlib.sha256(tar).hexdigest()
    produced = bytearray()
    buffer = bytearray(chunk)
    with open(split, "rb") as kept, RebuiltTar(kept, root, diff_id, "layer L") as rebuilt:
        try:
            while count := rebuilt.readinto(buffer):
                produced += buffer[:count]
            rebuilt.verify()
        except DrivebayError as exc:
            return bytes(produced), exc
    return bytes(produced), None


def test_tiny_and_large_reads_rebuild_the_same_bytes(tmp_path: Path) -> None:
    root = applied(NESTED, tmp_path)
    _, split = split_of(NESTED, tmp_path)
    assert read_until_error(split, root, NESTED, 1) == (NESTED, None)
    assert read_until_error(split, root, NESTED, 1 << 20) == (NESTED, None)


# The path in the layer made a symlink, what it points to in the outside directory, and the reason given.
SWAPPED = {
    "a directory at the top": ("a", ".", "its directory 'a' is a symlink now"),
    "a directory deeper down": ("a/b", ".", "its directory 'a/b' is a symlink now"),
    "the file itself": ("a/b/secret", "secret", "Too many levels of symbolic links"),
}


@pytest.mark.parametrize("case", list(SWAPPED))
@pytest.mark.parametrize("chunk", [1, 1 << 20])
def test_a_symlink_on_a_files_path_fails_the_rebuild_without_reading_outside(
    tmp_path: Path, case: str, chunk: int
) -> None:
    swapped, target, reason = SWAPPED[case]
    root = applied(NESTED, tmp_path)
    _, split = split_of(NESTED, tmp_path)
    # Outside the layer, the same path leads to a file of the same name: following the symlink would read it.
    outside = tmp_path / "outside"
    (outside / "b").mkdir(parents=True)
    (outside / "secret").write_bytes(b"OUTSIDE!" * 1000)
    (outside / "b" / "secret").write_bytes(b"OUTSIDE!" * 1000)
    victim = root / swapped
    os.rename(victim, tmp_path / "moved-away")
    victim.symlink_to(outside / target)
    produced, error = read_until_error(split, root, NESTED, chunk)
    assert isinstance(error, DigestMismatch)
    assert str(error) == (
        f"layer L: cannot read file 'a/b/secret' of the layer ({reason}); the layer was changed, load the image again"
    )
    assert b"OUTSIDE" not in produced
    assert NESTED.startswith(produced)


def test_a_file_on_a_files_path_fails_the_rebuild_naming_it(tmp_path: Path) -> None:
    root = applied(NESTED, tmp_path)
    _, split = split_of(NESTED, tmp_path)
    shutil.rmtree(root / "a" / "b")
    (root / "a" / "b").write_bytes(b"now a file")
    _, error = read_until_error(split, root, NESTED, 1 << 16)
    assert isinstance(error, DigestMismatch)
    assert "cannot read file 'a/b/secret' of the layer ('a/b' is not a directory now)" in str(error)


def test_a_fifo_in_a_files_place_fails_the_rebuild_instead_of_blocking(tmp_path: Path) -> None:
    root = applied(NESTED, tmp_path)
    _, split = split_of(NESTED, tmp_path)
    (root / "top").unlink()
    os.mkfifo(root / "top")
    _, error = read_until_error(split, root, NESTED, 1 << 16)
    assert isinstance(error, DigestMismatch)
    assert "cannot read file 'top' of the layer (it is not a regular file now)" in str(error)


def test_a_truncated_split_is_refused_wherever_it_is_cut(tmp_path: Path) -> None:
    root = applied(NESTED, tmp_path)
    _, split = split_of(NESTED, tmp_path)
    whole = split.read_bytes()
    cut_split = tmp_path / "cut.tarsplit"
    # Every cut in the records around the first file (its F record and name) and in the end record.
    first_file = whole.index(b"a/b/secret") - 13
    cuts = sorted({len(MAGIC), *range(first_file - 3, first_file + 30), *range(len(whole) - 12, len(whole))})
    for cut in cuts:
        cut_split.write_bytes(whole[:cut])
        for chunk in (7, 1 << 20):
            produced, error = read_until_error(cut_split, root, NESTED, chunk)
            assert isinstance(error, InvalidArchive), (cut, chunk, error)
            assert str(error) == "layer L: its tar-split is truncated; load the image again"
            assert NESTED.startswith(produced)


def test_a_split_with_an_unknown_record_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.tarsplit"
    bogus.write_bytes(MAGIC + b"X")
    _, error = read_until_error(bogus, tmp_path, b"", 1 << 16)
    assert isinstance(error, InvalidArchive)
    assert "unknown record type 0x58" in str(error)


def open_fds() -> set[str]:
    """The fds open now, after collecting earlier tests' objects (one finalized mid-test would close an fd)."""
    gc.collect()
    return set(os.listdir("/proc/self/fd"))


def test_a_rebuild_leaves_no_fd_open_whether_it_ends_fails_or_is_dropped(tmp_path: Path) -> None:
    root = applied(NESTED, tmp_path)
    _, split = split_of(NESTED, tmp_path)
    diff_id = "sha256:" + hashlib.sha256(NESTED).hexdigest()
    before = open_fds()
    assert read_until_error(split, root, NESTED, 4096) == (NESTED, None)
    # Closed halfway, inside a file whose directories are open.
    with open(split, "rb") as kept, RebuiltTar(kept, root, diff_id, "layer L") as rebuilt:
        rebuilt.read(len(NESTED) // 2)
    # Never closed: dropping it closes its fds.
    with open(split, "rb") as kept:
        dropped = RebuiltTar(kept, root, diff_id, "layer L")
        dropped.read(len(NESTED) // 2)
        del dropped
    (root / "a" / "b" / "secret").unlink()
    assert isinstance(read_until_error(split, root, NESTED, 4096)[1], DigestMismatch)
    assert open_fds() - before == set()
