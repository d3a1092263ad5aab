"""HTTP/1.1 message bodies as streams: chunked or sized, read and written without buffering them whole.

Docker sends ``GraphDriver.ApplyDiff`` tars with chunked transfer encoding
and reads ``GraphDriver.Diff`` and ``LogDriver.ReadLogs`` answers as they
come, so both sides of drivebay's plugin protocol move layer tars and logs
through these classes in bounded pieces.
"""

from __future__ import annotations

import io
from typing import BinaryIO

from drivebay.errors import PluginError

CHUNK = 1 << 20
"""Bytes per chunk written; large enough that framing costs nothing next to the tar."""


class SizedBody(io.RawIOBase):
    """The next ``length`` bytes of ``stream`` (a ``Content-Length`` body)."""

    def __init__(self, stream: BinaryIO, length: int) -> None:
        self._stream = stream
        self._left = length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._left <= 0:
            return 0
        want = min(len(buffer), self._left)
        data = self._stream.read(want)
        if not data:
            raise PluginError(f"the HTTP body ended {self._left} bytes early; the peer disconnected")
        buffer[: len(data)] = data
        self._left -= len(data)
        return len(data)


class ChunkedBody(io.RawIOBase):
    """A ``Transfer-Encoding: chunked`` body of ``stream``, decoded; trailers are read and dropped."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._left = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def _next_chunk(self) -> None:
        line = self._stream.readline(1024)
        if not line.endswith(b"\n"):
            raise PluginError("a chunked HTTP body ended inside a chunk header; the peer disconnected")
        try:
            self._left = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise PluginError(f"bad chunk header {line[:40]!r} in a chunked HTTP body") from exc
        if self._left == 0:
            while self._stream.readline(1024) not in (b"\r\n", b"\n", b""):
                pass
            self._done = True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._done:
            return 0
        if self._left == 0:
            self._next_chunk()
            if self._done:
                return 0
        data = self._stream.read(min(len(buffer), self._left))
        if not data:
            raise PluginError("a chunked HTTP body ended inside a chunk; the peer disconnected")
        buffer[: len(data)] = data
        self._left -= len(data)
        if self._left == 0 and self._stream.read(2) not in (b"\r\n",):
            raise PluginError("a chunk of a chunked HTTP body is not followed by CRLF")
        return len(data)


class ChunkedWriter(io.RawIOBase):
    """Writes what it is given as chunks to ``stream``; :meth:`finish` writes the last, empty chunk."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        size = len(data)
        if size:
            self._stream.write(b"%x\r\n" % size)
            self._stream.write(data)
            self._stream.write(b"\r\n")
        return size

    def finish(self) -> None:
        self._stream.write(b"0\r\n\r\n")
        self._stream.flush()


def drain(body: io.RawIOBase) -> None:
    """Read ``body`` to its end, so the connection is ready for the next request."""
    buffer = bytearray(CHUNK)
    while body.readinto(memoryview(buffer)):
        pass


def buffered_writer(raw: io.RawIOBase) -> BinaryIO:
    """``raw`` behind a :data:`CHUNK`-sized buffer, so small writes become few chunks."""
    return io.BufferedWriter(raw, CHUNK)
