"""Decompressing layer streams: gzip, zstd or plain, told apart by their magic bytes."""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO, cast

from drivebay.errors import InvalidArchive

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_BUFFER = 1 << 20


class _Prefixed(io.RawIOBase):
    """``stream`` with the sniffed bytes put back in front, for streams that cannot seek."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = head
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        # Straight into the caller's buffer where the stream can: a read() would allocate and copy each chunk
        # once more, on the apply's own thread.
        readinto = getattr(self._stream, "readinto", None)
        if readinto is not None:
            return int(readinto(buffer) or 0)
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


@contextmanager
def open_layer_stream(raw: BinaryIO) -> Iterator[BinaryIO]:
    """Yield the uncompressed content of ``raw``, a plain, gzip or zstd layer tar.

    The format is told by magic bytes, never by a file name. ``raw`` is not
    closed. Corrupt compressed data raises ``InvalidArchive`` while reading.
    """
    head = b""
    while len(head) < len(_ZSTD_MAGIC):
        chunk = raw.read(len(_ZSTD_MAGIC) - len(head))
        if not chunk:
            break
        head += chunk
    prefixed = _Prefixed(head, raw)
    whole = cast(BinaryIO, io.BufferedReader(prefixed, _BUFFER))
    if head.startswith(_GZIP_MAGIC):
        with gzip.GzipFile(fileobj=whole, mode="rb") as unzipped:
            checked = _Checked(cast(BinaryIO, unzipped), "gzip", (OSError, EOFError))
            yield cast(BinaryIO, io.BufferedReader(checked, _BUFFER))
    elif head.startswith(_ZSTD_MAGIC):
        # Imported for zstd layers only: loading it took ~3 ms of every command's start-up.
        import zstandard

        with zstandard.ZstdDecompressor().stream_reader(whole, read_size=_BUFFER, closefd=False) as unzstd:
            checked = _Checked(cast(BinaryIO, unzstd), "zstd", (OSError, EOFError, zstandard.ZstdError))
            yield cast(BinaryIO, io.BufferedReader(checked, _BUFFER))
    else:
        # Unbuffered: a layer apply reads chunks of its own size, and a buffer would copy each one once more
        # whenever that size is below the buffer's.
        yield cast(BinaryIO, prefixed)


class _Checked(io.RawIOBase):
    """A decompressing stream whose decoding errors (``errors``) become ``InvalidArchive``."""

    def __init__(self, stream: BinaryIO, kind: str, errors: tuple[type[Exception], ...]) -> None:
        self._stream = stream
        self._kind = kind
        self._errors = errors

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        try:
            data = self._stream.read(len(buffer))
        except self._errors as exc:
            raise InvalidArchive(
                f"the {self._kind} layer stream is corrupt or truncated ({exc}); fetch it again"
            ) from exc
        buffer[: len(data)] = data
        return len(data)
