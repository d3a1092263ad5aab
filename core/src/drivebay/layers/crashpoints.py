"""A test hook: die with SIGKILL at a named point, to prove crash safety.

The crash tests run ``drivebay`` with ``DRIVEBAY_TEST_CRASH_AT=<point>``; the
store calls :func:`crash_point` at each named step of ``image load`` and
``container commit`` (names in :data:`POINTS`; ``layer:*`` points are passed
by both). Unset, it costs one lookup.
"""

from __future__ import annotations

import os
import signal
from typing import BinaryIO

ENV = "DRIVEBAY_TEST_CRASH_AT"

POINTS = (
    "layer:claimed",
    "layer:applying",
    "layer:mid-apply",
    "layer:applied",
    "layer:ready",
    "load:before-register",
    "commit:diffed",
    "commit:before-register",
)


def crash_point(name: str) -> None:
    """SIGKILL this process if ``$DRIVEBAY_TEST_CRASH_AT`` names this point."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


class _CrashAfterFirstRead:
    """A reader that dies once the driver has taken its first chunk: a kill in the middle of applying."""

    def __init__(self, stream: BinaryIO, name: str) -> None:
        self._stream = stream
        self._name = name
        self._reads = 0

    def read(self, size: int = -1) -> bytes:
        self._reads += 1
        if self._reads > 1:
            crash_point(self._name)
        return self._stream.read(size)

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def crash_during_read(stream: BinaryIO, name: str) -> BinaryIO:
    """``stream``, or a reader that SIGKILLs after its first read if ``$DRIVEBAY_TEST_CRASH_AT`` is ``name``."""
    if os.environ.get(ENV) != name:
        return stream
    return _CrashAfterFirstRead(stream, name)  # type: ignore[return-value]
