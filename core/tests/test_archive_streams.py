"""Layer streams: plain, gzip and zstd are told apart by magic bytes; layer IDs are checked."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pytest
import zstandard
from test_archive_support import Member, build_tar

from drivebay.archive import WhiteoutFormat, apply_layer_tar, check_layer_id, open_layer_stream
from drivebay.errors import InvalidArchive, UsageError

PLAIN = build_tar(Member("dir/", kind="dir"), Member("dir/file", data=b"content " * 10_000))
COMPRESSORS = {
    "plain": lambda data: data,
    "gzip": gzip.compress,
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
}


class Unseekable(io.RawIOBase):
    """A pipe-like stream: no seek, short reads."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), len(self._data), 1000)
        buffer[:n] = self._data[:n]
        self._data = self._data[n:]
        return n


@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
def test_stream_is_decompressed_by_magic(kind: str) -> None:
    raw = Unseekable(COMPRESSORS[kind](PLAIN))
    with open_layer_stream(raw) as stream:  # type: ignore[arg-type]
        assert stream.read() == PLAIN


@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
def test_compressed_layer_applies(tmp_path: Path, kind: str) -> None:
    with open_layer_stream(io.BytesIO(COMPRESSORS[kind](PLAIN))) as stream:
        size = apply_layer_tar(stream, tmp_path, WhiteoutFormat.DELETE)
    assert size == 80_000
    assert (tmp_path / "dir" / "file").read_bytes() == b"content " * 10_000


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_corrupt_compressed_stream_is_invalid(tmp_path: Path, kind: str) -> None:
    data = bytearray(COMPRESSORS[kind](PLAIN))
    data[len(data) // 2 :] = b"\x00" * (len(data) - len(data) // 2)
    with pytest.raises(InvalidArchive, match=kind), open_layer_stream(io.BytesIO(bytes(data))) as stream:
        apply_layer_tar(stream, tmp_path, WhiteoutFormat.DELETE)


def test_empty_stream_is_an_empty_layer(tmp_path: Path) -> None:
    with open_layer_stream(io.BytesIO(b"")) as stream:
        assert apply_layer_tar(stream, tmp_path, WhiteoutFormat.DELETE) == 0
    assert list(tmp_path.iterdir()) == []


def test_apply_reads_the_stream_to_its_end(tmp_path: Path) -> None:
    raw = io.BytesIO(PLAIN + bytes(10_240))
    apply_layer_tar(raw, tmp_path, WhiteoutFormat.DELETE)
    assert raw.read() == b""


@pytest.mark.parametrize("layer_id", ["a", "0" * 64, "my-layer_1.2", "A" + "b" * 127])
def test_good_layer_ids_pass(layer_id: str) -> None:
    check_layer_id(layer_id)


@pytest.mark.parametrize("layer_id", ["", ".", "..", "-x", "a/b", "a b", "../x", "a" * 129, "_x", "é"])
def test_bad_layer_ids_are_usage_errors(layer_id: str) -> None:
    with pytest.raises(UsageError, match="invalid layer ID"):
        check_layer_id(layer_id)
