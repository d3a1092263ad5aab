"""Docker's ``LogEntry`` protobuf, by hand, and its 4-byte length framing.

The message (moby ``api/types/plugins/logdriver/entry.proto``)::

    message LogEntry {
        string source = 1;
        int64 time_nano = 2;
        bytes line = 3;
        bool partial = 4;
        PartialLogEntryMetadata partial_log_metadata = 5;
    }
    message PartialLogEntryMetadata { bool last = 1; string id = 2; int32 ordinal = 3; }

On the wire each message is preceded by its length as a 4-byte big-endian
integer: dockerd writes the FIFO that ``LogDriver.StartLogging`` names this
way, and reads ``LogDriver.ReadLogs`` answers this way. Only varint (0) and
length-delimited (2) fields occur; unknown fields are skipped, as protobuf
requires, so newer engines' additions do not break decoding.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

from drivebay.errors import PluginError

MAX_ENTRY = 1 << 20
"""Docker's own limit (``maxMsgLen``) for one framed entry; a longer length means a corrupt stream."""


@dataclass(frozen=True)
class PartialMetadata:
    """Which part of a split line an entry is: ``ordinal`` counts from 1, ``last`` ends the line."""

    last: bool
    id: str
    ordinal: int


@dataclass(frozen=True)
class WireLogEntry:
    """One decoded ``LogEntry``."""

    source: str
    time_nano: int
    line: bytes
    partial: bool = False
    partial_metadata: PartialMetadata | None = None

    @property
    def continues(self) -> bool:
        """Whether the line goes on in the next entry of the same source."""
        if self.partial_metadata is not None:
            return not self.partial_metadata.last
        return self.partial


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 and int32 values are ten-byte two's complement varints
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise PluginError("a LogEntry ends inside a varint; the log stream is corrupt")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise PluginError("a LogEntry varint is longer than 10 bytes; the log stream is corrupt")


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _field(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _bytes_field(number: int, value: bytes) -> bytes:
    return _field(number, 2) + _varint(len(value)) + value


def encode_entry(entry: WireLogEntry) -> bytes:
    """The protobuf encoding of ``entry`` (proto3: default values are left out)."""
    out = bytearray()
    if entry.source:
        out += _bytes_field(1, entry.source.encode())
    if entry.time_nano:
        out += _field(2, 0) + _varint(entry.time_nano)
    if entry.line:
        out += _bytes_field(3, entry.line)
    if entry.partial:
        out += _field(4, 0) + b"\x01"
    meta = entry.partial_metadata
    if meta is not None:
        inner = bytearray()
        if meta.last:
            inner += _field(1, 0) + b"\x01"
        if meta.id:
            inner += _bytes_field(2, meta.id.encode())
        if meta.ordinal:
            inner += _field(3, 0) + _varint(meta.ordinal)
        out += _bytes_field(5, bytes(inner))
    return bytes(out)


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    fields: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = _read_varint(data, pos)
            fields.append((number, value))
        elif wire_type == 2:
            size, pos = _read_varint(data, pos)
            if pos + size > len(data):
                raise PluginError("a LogEntry field runs past the end of its entry; the log stream is corrupt")
            fields.append((number, data[pos : pos + size]))
            pos += size
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        else:
            raise PluginError(f"a LogEntry has protobuf wire type {wire_type}, which it never uses; corrupt stream")
    return fields


def decode_entry(data: bytes) -> WireLogEntry:
    """Decode one ``LogEntry``. Raises ``PluginError`` for malformed bytes."""
    source, time_nano, line, partial = "", 0, b"", False
    meta: PartialMetadata | None = None
    for number, value in _fields(data):
        if number == 1 and isinstance(value, bytes):
            source = value.decode("utf-8", "replace")
        elif number == 2 and isinstance(value, int):
            time_nano = _signed(value, 64)
        elif number == 3 and isinstance(value, bytes):
            line = value
        elif number == 4 and isinstance(value, int):
            partial = bool(value)
        elif number == 5 and isinstance(value, bytes):
            last, ident, ordinal = False, "", 0
            for inner_number, inner in _fields(value):
                if inner_number == 1 and isinstance(inner, int):
                    last = bool(inner)
                elif inner_number == 2 and isinstance(inner, bytes):
                    ident = inner.decode("utf-8", "replace")
                elif inner_number == 3 and isinstance(inner, int):
                    ordinal = _signed(inner, 32)
            meta = PartialMetadata(last, ident, ordinal)
    return WireLogEntry(source, time_nano, line, partial, meta)


def write_frame(out: BinaryIO, entry: WireLogEntry) -> None:
    """Write ``entry`` with its 4-byte big-endian length in front."""
    data = encode_entry(entry)
    out.write(struct.pack(">I", len(data)) + data)


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def read_frame(stream: BinaryIO) -> WireLogEntry | None:
    """The next framed entry of ``stream``, or ``None`` at a clean end.

    Raises ``PluginError`` when the stream ends inside an entry or a length
    is over :data:`MAX_ENTRY`.
    """
    head = _read_exact(stream, 4)
    if not head:
        return None
    if len(head) < 4:
        raise PluginError("the log stream ended inside an entry's length")
    (size,) = struct.unpack(">I", head)
    if size > MAX_ENTRY:
        raise PluginError(f"a log entry claims {size} bytes, over Docker's limit of {MAX_ENTRY}; corrupt stream")
    data = _read_exact(stream, size)
    if len(data) < size:
        raise PluginError(f"the log stream ended {size - len(data)} bytes into a {size}-byte entry")
    return decode_entry(data)
