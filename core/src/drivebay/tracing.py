"""The timing tracer: a pluggy wrapper around every hook of one driver kind.

It is an ordinary non-driver plugin, the model for third-party wrappers
(entry-point group ``drivebay.wrappers``). ``drivebay --debug`` echoes each
call with its duration to stderr; ``drivebay bench`` reads :meth:`totals`.
"""

from __future__ import annotations

import inspect
import sys
import time
from collections.abc import Callable, Generator
from types import ModuleType
from typing import Any

from drivebay.hookspecs import PROJECT, hookimpl


class TimingTracer:
    """Sums calls and seconds per hook (bounded memory, however long it runs); subclasses add one wrapper per hook."""

    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self._totals: dict[str, dict[str, float]] = {}

    @classmethod
    def for_kind(cls, spec: ModuleType, echo: bool = False) -> TimingTracer:
        """Build a tracer class with a wrapper for each hook in ``spec`` and instantiate it."""
        hook_names = [
            name
            for name, fn in inspect.getmembers(spec, inspect.isfunction)
            if hasattr(fn, f"{PROJECT}_spec")
        ]
        members = {name: _wrapper_for(name) for name in hook_names}
        traced: type[TimingTracer] = type(f"TimingTracer[{spec.__name__}]", (cls,), members)
        return traced(echo=echo)

    def record(self, hook: str, seconds: float, failed: bool) -> None:
        entry = self._totals.setdefault(hook, {"calls": 0, "seconds": 0.0, "failed": 0})
        entry["calls"] += 1
        entry["seconds"] += seconds
        entry["failed"] += int(failed)
        if self.echo:
            status = " (failed)" if failed else ""
            print(f"drivebay: {hook} {seconds * 1000:.2f} ms{status}", file=sys.stderr)

    def totals(self) -> dict[str, dict[str, float]]:
        """Calls, failed calls and seconds per hook since the last :meth:`reset`, for bench's JSON."""
        return {hook: dict(entry) for hook, entry in self._totals.items()}

    def reset(self) -> None:
        self._totals.clear()


def _wrapper_for(hook: str) -> Callable[..., Any]:
    def wrapper(self: TimingTracer) -> Generator[None, Any, Any]:
        start = time.perf_counter()
        try:
            result = yield
        except BaseException:
            self.record(hook, time.perf_counter() - start, failed=True)
            raise
        self.record(hook, time.perf_counter() - start, failed=False)
        return result

    wrapper.__name__ = hook
    return hookimpl(wrapper=True)(wrapper)
