"""Times as Docker writes and reads them: RFC 3339 with nanoseconds, and ``--since``/``--until`` values."""

from __future__ import annotations

import calendar
import re
import time

from drivebay.errors import UsageError

# Patterns, not compiled ones: re compiles (and caches) them on first use, so the commands that never parse a
# time (most of them import this module through the container store) do not pay for compiling them at start-up.
_DURATION_PART = r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)"
_DURATION_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_UNIX = r"^(\d+)(?:\.(\d{1,9}))?$"
_DATE = (
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)


def _go_duration_ns(text: str) -> int | None:
    body = text[1:] if text[:1] in "+-" else text
    part = re.compile(_DURATION_PART)
    pos, total = 0, 0
    while pos < len(body):
        match = part.match(body, pos)
        if not match:
            return None
        total += int(float(match.group(1)) * _DURATION_UNITS[match.group(2)])
        pos = match.end()
    if not body:
        return None
    return -total if text.startswith("-") else total


def parse_timestamp(text: str, now_ns: int | None = None) -> int:
    """Parse ``--since``/``--until`` as ``docker logs`` does; returns UTC nanoseconds.

    Accepts a Go duration relative to now (``10m``, ``1h30m``), a Unix time
    with optional fraction (``1795429638.5``), or an RFC 3339 date or time
    (``2026-11-23``, ``2026-11-23T12:00:00.5Z``; no zone means local time).
    Raises ``UsageError`` naming the value and the accepted forms.
    """
    value = text.strip()
    now = time.time_ns() if now_ns is None else now_ns
    duration = _go_duration_ns(value)
    if duration is not None:
        return now - duration
    unix = re.match(_UNIX, value)
    if unix:
        return int(unix.group(1)) * 10**9 + int((unix.group(2) or "0").ljust(9, "0"))
    date = re.match(_DATE, value)
    if date:
        year, month, day, hour, minute, second, frac, zone = date.groups()
        fields = (int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))
        try:
            if zone is None:
                seconds = int(time.mktime((*fields, 0, 0, -1)))
            else:
                seconds = calendar.timegm((*fields, 0, 0, 0))
                if zone != "Z":
                    sign = -1 if zone[0] == "-" else 1
                    digits = zone[1:].replace(":", "")
                    seconds -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
        except (OverflowError, ValueError) as exc:
            raise UsageError(f"timestamp {text!r} is out of range") from exc
        return seconds * 10**9 + int((frac or "0").ljust(9, "0"))
    raise UsageError(
        f"cannot parse timestamp {text!r}: use a duration like 10m or 1h30m, a Unix time like 1795429638.5, "
        "or an RFC 3339 time like 2026-11-23T12:00:00Z"
    )


def format_timestamp(timestamp_ns: int) -> str:
    """``docker logs -t``'s fixed-width RFC 3339 time in UTC: ``2026-11-23T12:00:00.123456789Z``."""
    seconds, nanos = divmod(timestamp_ns, 10**9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"
