"""The C apply under stress: failures leak no fds, applies run in parallel threads, damaged tars never crash it.

The fuzz runs the tar-split over every damaged tar too: it must read each to its end, and rebuild exactly
every one the apply took (when it says it can).
"""

from __future__ import annotations

import gc
import hashlib
import io
import os
import random
import shutil
import threading
from pathlib import Path

import pytest
from test_archive_capply_formats import Exploding, StreamBroke
from test_archive_support import Member, build_tar

from drivebay.archive import RebuiltTar, WhiteoutFormat, apply_layer_tar, write_tar_split, write_tree_tar
from drivebay.errors import ArchiveIOError, DrivebayError, InvalidArchive, UnsafeArchive
from drivebay.testing.treecompare import assert_same_tree


def open_fds() -> set[str]:
    """The fds open now, after collecting earlier tests' objects (one finalized mid-test would close an fd)."""
    gc.collect()
    return set(os.listdir("/proc/self/fd"))


def deep_tar(depth: int, *tail: Member) -> bytes:
    dirs = [Member("/".join(f"d{i}" for i in range(level + 1)) + "/", kind="dir") for level in range(depth)]
    return build_tar(*dirs, *tail)


DEEP = "/".join(f"d{i}" for i in range(12))
WITH_FILE = deep_tar(12, Member(DEEP + "/f", data=b"x" * 9000))
FAILING = {
    "symlink parent deep down": (
        deep_tar(12, Member(DEEP + "/ln", kind="symlink", target="/"), Member(DEEP + "/ln/x")),
        UnsafeArchive,
    ),
    "hardlink to nothing": (deep_tar(12, Member(DEEP + "/h", kind="hardlink", target=DEEP + "/no")), InvalidArchive),
    "truncated in a file": (WITH_FILE[: WITH_FILE.index(b"x" * 9000) + 4000], InvalidArchive),
    "name too long": (deep_tar(12, Member(DEEP + "/" + "n" * 300)), ArchiveIOError),
    "stream raises": (WITH_FILE[: WITH_FILE.index(b"x" * 9000) + 4000], StreamBroke),
}


@pytest.mark.parametrize("case", sorted(FAILING))
def test_a_failed_apply_leaves_no_fd_open(tmp_path: Path, case: str) -> None:
    data, error = FAILING[case]
    before = open_fds()
    stream = Exploding(data, StreamBroke("gone")) if error is StreamBroke else io.BytesIO(data)
    with pytest.raises(error):
        apply_layer_tar(stream, tmp_path, WhiteoutFormat.DELETE)  # type: ignore[arg-type]
    assert open_fds() - before == set()


def test_a_good_apply_leaves_no_fd_open(tmp_path: Path) -> None:
    data = deep_tar(12, Member(DEEP + "/f", data=b"x"), Member("a/b/c", data=b"y"), Member(".wh.nothing"))
    before = open_fds()
    apply_layer_tar(io.BytesIO(data), tmp_path, WhiteoutFormat.DELETE)
    assert open_fds() - before == set()


def test_a_directory_replaced_by_a_file_while_in_use(tmp_path: Path) -> None:
    # 'a' and 'a/b' are open as the parents of 'a/b/f' when the member 'a' replaces them with a file.
    data = build_tar(
        Member("a/", kind="dir", mode=0o700),
        Member("a/b/", kind="dir"),
        Member("a/b/f", data=b"1"),
        Member("a", data=b"now a file"),
        Member("c/", kind="dir", mode=0o751),
    )
    apply_layer_tar(io.BytesIO(data), tmp_path, WhiteoutFormat.DELETE)
    assert (tmp_path / "a").read_bytes() == b"now a file"
    assert oct((tmp_path / "c").stat().st_mode & 0o7777) == oct(0o751)


def sample_tree(root: Path, seed: int, files: int) -> None:
    rng = random.Random(seed)
    dirs = [root]
    for index in range(files):
        if rng.random() < 0.2:
            new = rng.choice(dirs) / f"dir{index}"
            new.mkdir()
            dirs.append(new)
        parent = rng.choice(dirs)
        kind = rng.random()
        if kind < 0.1:
            os.symlink(f"target{index}", parent / f"link{index}")
        elif kind < 0.15 and index:
            existing = next((p for p in parent.iterdir() if p.is_file() and not p.is_symlink()), None)
            if existing is not None:
                os.link(existing, parent / f"hard{index}")
        else:
            (parent / f"file{index}-{'x' * rng.randrange(0, 120)}").write_bytes(rng.randbytes(rng.randrange(0, 3000)))
    os.setxattr(dirs[-1], "user.note", b"v")


class Gated(io.RawIOBase):
    """A stream whose first read waits until the other thread's apply is reading too."""

    def __init__(self, data: bytes, gate: threading.Barrier) -> None:
        self._data = io.BytesIO(data)
        self._gate = gate
        self.overlapped = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if not self.overlapped:
            self._gate.wait(timeout=60)
            self.overlapped = True
        return self._data.readinto(buffer)


def test_two_applies_run_at_once_in_two_threads(tmp_path: Path) -> None:
    sources = [tmp_path / f"src{i}" for i in range(2)]
    targets = [tmp_path / f"dst{i}" for i in range(2)]
    tars = []
    for index, (src, dst) in enumerate(zip(sources, targets, strict=True)):
        src.mkdir()
        dst.mkdir()
        sample_tree(src, seed=index, files=400)
        out = io.BytesIO()
        write_tree_tar(out, src, WhiteoutFormat.DELETE)
        tars.append(out.getvalue())
    gate = threading.Barrier(2)
    streams = [Gated(data, gate) for data in tars]
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            apply_layer_tar(streams[index], targets[index], WhiteoutFormat.DELETE)  # type: ignore[arg-type]
        except BaseException as exc:  # handed to the test thread below
            errors.append(exc)

    cwd, before = os.getcwd(), open_fds()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert all(stream.overlapped for stream in streams)  # both applies were in flight together
    for src, dst in zip(sources, targets, strict=True):
        assert_same_tree(src, dst, "tree -> tar -> apply in a thread", ignore=("/",), labels=("source", "applied"))
    assert os.getcwd() == cwd and open_fds() - before == set()


def header_offsets(data: bytes) -> list[int]:
    """Offsets of every header block (extension headers included) before the end-of-archive blocks."""
    offsets, pos = [], 0
    while pos + 512 <= len(data) and data[pos : pos + 512] != bytes(512):
        offsets.append(pos)
        size = int(data[pos + 124 : pos + 136].rstrip(b"\x00 ") or b"0", 8)
        pos += 512 + -(-size // 512) * 512
    return offsets


@pytest.fixture(scope="module")
def real_tar(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    src = tmp_path_factory.mktemp("fuzz-src")
    sample_tree(src, seed=7, files=25)
    (src / ("long-" + "n" * 150)).write_bytes(b"pax path")  # a PAX header among the members
    os.utime(src / ("long-" + "n" * 150), ns=(0, 1_700_000_000_123_456_789))
    out = io.BytesIO()
    write_tree_tar(out, src, WhiteoutFormat.DELETE)
    return out.getvalue()


def mutations(data: bytes, seed: int, count: int) -> list[tuple[str, bytes]]:
    """Truncations (not on a block boundary), header corruptions, and (every third) flips anywhere."""
    rng = random.Random(seed)
    headers = header_offsets(data)
    end = headers[-1] + 512
    out = []
    for index in range(count):
        choice = index % 3
        if choice == 0:
            cut = rng.randrange(1, end)
            cut += cut % 512 == 0
            out.append(("truncated", data[:cut]))
        elif choice == 1:
            offset = rng.choice(headers) + rng.choice([i for i in range(512) if not 148 <= i < 156])
            damaged = bytearray(data)
            damaged[offset] ^= rng.randrange(1, 256)
            out.append(("corrupt header", bytes(damaged)))
        else:
            damaged = bytearray(data)
            for _ in range(rng.randrange(1, 8)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            out.append(("anything", bytes(damaged)))
    return out


def check_split(mutated: bytes, root: Path, applied: bool, where: str) -> None:
    """The tar-split of a damaged tar reads it all; one the apply took rebuilds it exactly from the layer."""
    path = root.parent / f"{root.name}.split"
    stream = io.BytesIO(mutated)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        split = write_tar_split(stream, fd)
    finally:
        os.close(fd)
    assert stream.tell() == len(mutated), where
    assert split.problem is not None or split.size == len(mutated), where
    if applied:
        assert split.problem is None, f"{where}: {split.problem!r}"
        if split.exact:
            diff_id = "sha256:" + hashlib.sha256(mutated).hexdigest()
            with open(path, "rb") as kept, RebuiltTar(kept, root, diff_id, where) as rebuilt:
                assert rebuilt.read() == mutated, where
                rebuilt.verify()
    path.unlink()


def run_fuzz(tmp_path: Path, data: bytes, seed: int, count: int) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "sentinel").write_bytes(b"untouched")
    for index, (kind, mutated) in enumerate(mutations(data, seed, count)):
        root = tmp_path / "layers" / str(index)
        root.mkdir(parents=True)
        applied = False
        try:
            apply_layer_tar(io.BytesIO(mutated), root, WhiteoutFormat.DELETE)
            applied = True
        except DrivebayError as exc:
            if kind != "anything":
                assert isinstance(exc, InvalidArchive), f"mutation {index} ({kind}): {exc!r}"
        else:
            assert kind == "anything", f"mutation {index} ({kind}) was applied"
        try:
            check_split(mutated, root, applied, f"mutation {index} ({kind})")
        finally:
            shutil.rmtree(root)
    assert os.listdir(outside) == ["sentinel"] and (outside / "sentinel").read_bytes() == b"untouched"


def test_damaged_tars_are_refused_never_crash(tmp_path: Path, real_tar: bytes) -> None:
    run_fuzz(tmp_path, real_tar, seed=1, count=90)


@pytest.mark.slow
def test_many_damaged_tars_are_refused_never_crash(tmp_path: Path, real_tar: bytes) -> None:
    run_fuzz(tmp_path, real_tar, seed=2, count=3000)
