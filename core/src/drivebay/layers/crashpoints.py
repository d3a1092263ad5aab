"""A test hook: die with SIGKILL at a named point, to prove crash safety.

The crash tests run ``drivebay`` with ``DRIVEBAY_TEST_CRASH_AT=<point>``; the
store calls :func:`crash_point` at each named step of ``image load`` and
``container commit`` (names in :data:`POINTS`; ``layer:*`` points are passed
by both). Unset, it costs one lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "DRIVEBAY_TEST_CRASH_AT"

POINTS = (
    "layer:claimed",
    "layer:applying",
    "layer:applied",
    "layer:ready",
    "load:verified",
    "load:before-register",
    "commit:diffed",
    "commit:before-register",
)


def crash_point(name: str) -> None:
    """SIGKILL this process if ``$DRIVEBAY_TEST_CRASH_AT`` names this point."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
