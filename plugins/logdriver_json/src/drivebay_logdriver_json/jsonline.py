"""Docker's json-file record, byte for byte: encoding and decoding one line.

A record is ``{"log":...,"stream":...,"attrs":{...},"time":...}\\n``. The
``log`` string is escaped as moby's ``ffjsonWriteJSONBytesAsString``: ``"``,
``\\``, newline and carriage return get short escapes, other control
characters, ``<``, ``>``, ``&``, U+2028 and U+2029 become ``\\u00XX`` style
escapes, and every byte of invalid UTF-8 becomes ``\\ufffd``. ``attrs`` is
Go's ``json.Marshal`` of a string map (sorted keys, same HTML escaping, but
tab as ``\\t``). ``time`` is RFC 3339 in UTC with nanoseconds, trailing zeros
trimmed.
"""

from __future__ import annotations

import calendar
import codecs
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

_GO_REPLACE = "drivebay-go-utf8"
_INVALID = "\udcff"
"""Stands for one invalid byte until escaping; a lone surrogate never comes out of a UTF-8 decode."""


def _mark_each_byte(error: UnicodeError) -> tuple[str, int]:
    # Go's utf8.DecodeRune consumes one byte per invalid sequence, so each byte gets its own \ufffd escape.
    assert isinstance(error, UnicodeDecodeError)
    return _INVALID * (error.end - error.start), error.end


codecs.register_error(_GO_REPLACE, _mark_each_byte)

_NEEDS_ESCAPE = re.compile('[\x00-\x1f"\\\\<>&\u2028\u2029\udcff]')
_SHORT_LOG = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", _INVALID: "\\ufffd"}
_SHORT_ATTRS = {**_SHORT_LOG, "\t": "\\t"}


def _long(char: str) -> str:
    return f"\\u{ord(char):04x}"


def _log_escape(match: re.Match[str]) -> str:
    char = match.group()
    return _SHORT_LOG.get(char) or _long(char)


def _attrs_escape(match: re.Match[str]) -> str:
    char = match.group()
    return _SHORT_ATTRS.get(char) or _long(char)


def escape_log(data: bytes) -> str:
    """The inside of the JSON string moby writes for ``data`` (no quotes)."""
    text = data.decode("utf-8", _GO_REPLACE)
    if _NEEDS_ESCAPE.search(text) is None:
        return text
    return _NEEDS_ESCAPE.sub(_log_escape, text)


def encode_attrs(attrs: Mapping[str, str]) -> str:
    """Go's ``json.Marshal(map[string]string)``: sorted keys, HTML-safe escaping."""

    def quoted(text: str) -> str:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", _GO_REPLACE)
        return '"' + _NEEDS_ESCAPE.sub(_attrs_escape, text) + '"'

    return "{" + ",".join(f"{quoted(k)}:{quoted(attrs[k])}" for k in sorted(attrs)) + "}"


class TimeFormat:
    """RFC 3339 with nanoseconds, trailing zeros trimmed, as Go's ``time.RFC3339Nano`` in UTC.

    Remembers the last second's prefix: consecutive lines mostly share it.
    """

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, timestamp_ns: int) -> str:
        second, nanos = divmod(timestamp_ns, 1_000_000_000)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        if nanos:
            return f"{self._prefix}.{nanos:09d}".rstrip("0") + "Z"
        return self._prefix + "Z"


class RecordEncoder:
    """Encodes messages of one log: the ``attrs`` part is fixed when the log opens."""

    def __init__(self, attrs: Mapping[str, str]) -> None:
        self._attrs = f'"attrs":{encode_attrs(attrs)},' if attrs else ""
        self._time = TimeFormat()

    def encode(self, line: bytes, source: str, timestamp_ns: int, newline: bool) -> bytes:
        """One record, with its trailing newline; ``newline`` adds ``\\n`` to the logged text."""
        log = escape_log(line) + ("\\n" if newline else "")
        parts = []
        if log:
            parts.append(f'"log":"{log}",')
        if source:
            parts.append(f'"stream":"{escape_log(source.encode())}",')
        return ("{" + "".join(parts) + self._attrs + f'"time":"{self._time(timestamp_ns)}"}}\n').encode()


_TIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$")


class TimeParser:
    """Parses RFC 3339 times to UTC nanoseconds, remembering the last second."""

    def __init__(self) -> None:
        self._key = ""
        self._seconds = 0

    def __call__(self, text: str) -> int:
        match = _TIME.match(text)
        if match is None:
            raise ValueError(f"not an RFC 3339 time: {text!r}")
        key = text[:19] + (match.group(8) or "")
        if key != self._key:
            year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
            seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
            zone = match.group(8)
            if zone != "Z":
                sign = -1 if zone[0] == "-" else 1
                seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
            self._key, self._seconds = key, seconds
        return self._seconds * 1_000_000_000 + int((match.group(7) or "0").ljust(9, "0"))


@dataclass(frozen=True, slots=True)
class Record:
    """One decoded line of a json-file log. ``log`` keeps its trailing newline, if any."""

    log: str
    stream: str
    timestamp_ns: int
    attrs: Mapping[str, str]


class RecordDecoder:
    """Decodes lines; a line that is not a complete record (torn, garbage) gives ``None``."""

    def __init__(self) -> None:
        self._time = TimeParser()

    def decode(self, raw: bytes) -> Record | None:
        try:
            obj = json.loads(raw)
            if not isinstance(obj, dict):
                return None
            attrs = obj.get("attrs") or {}
            return Record(
                log=str(obj.get("log", "")),
                stream=str(obj.get("stream", "")),
                timestamp_ns=self._time(str(obj["time"])),
                attrs=attrs if isinstance(attrs, dict) else {},
            )
        except (ValueError, KeyError):
            return None
