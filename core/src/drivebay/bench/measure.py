"""Wall and CPU time of a block, cache dropping, and disk usage."""

from __future__ import annotations

import os
import resource
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from drivebay.fs.backing import mount_holding


@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(action: Callable[[], object]) -> Timing:
    """Run ``action`` once; wall time plus the CPU time of this process and its children."""
    cpu0, wall0 = _cpu_seconds(), time.perf_counter()
    action()
    return Timing(wall=time.perf_counter() - wall0, cpu=_cpu_seconds() - cpu0)


@dataclass
class Phases:
    """Wall seconds spent per phase of a bench run (data generation, provisioning, setup, timed...).

    Phases nest: time spent in an inner phase (data generated lazily during a
    workload's setup, say) counts only there, so the totals add up to the run.
    """

    totals: dict[str, float] = field(default_factory=dict)
    by_fs: dict[str, dict[str, float]] = field(default_factory=dict)
    _stack: list[str] = field(default_factory=list)
    _since: float = 0.0
    _started: float = field(default_factory=time.perf_counter)

    def _charge(self, now: float) -> None:
        if self._stack:
            name = self._stack[-1]
            self.totals[name] = self.totals.get(name, 0.0) + now - self._since
        self._since = now

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self._charge(time.perf_counter())
        self._stack.append(name)
        try:
            yield
        finally:
            self._charge(time.perf_counter())
            self._stack.pop()

    def snapshot(self) -> dict[str, float]:
        """The totals so far, the open phase included up to now."""
        self._charge(time.perf_counter())
        return dict(self.totals)

    def to_json(self) -> dict[str, object]:
        totals = self.snapshot()
        return {
            "wall_s": round(time.perf_counter() - self._started, 3),
            "totals": {name: round(seconds, 3) for name, seconds in sorted(totals.items())},
            "by_fs": self.by_fs,
        }

    def summary(self) -> str:
        """One line: the run's wall time and where it went, largest phase first."""
        totals = self.snapshot()
        parts = ", ".join(f"{name} {seconds:.0f}s" for name, seconds in sorted(totals.items(), key=lambda i: -i[1]))
        return f"bench took {time.perf_counter() - self._started:.0f}s: {parts}"


def phase_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Seconds per phase between two snapshots, rounded for the JSON."""
    spent = {name: after[name] - before.get(name, 0.0) for name in sorted(after)}
    return {name: round(seconds, 3) for name, seconds in spent.items() if seconds >= 0.0005}


def _loop_backing_file(path: Path) -> Path | None:
    """The image file behind the loop device holding ``path``, if it is on one."""
    entry = mount_holding(path)
    if entry is None or not entry.source.startswith("/dev/loop"):
        return None
    backing = Path("/sys/block") / Path(entry.source).name / "loop" / "backing_file"
    return Path(backing.read_text(encoding="utf-8").strip()) if backing.exists() else None


def settle(path: Path) -> None:
    """Write back and commit what is pending on ``path``'s filesystem (``syncfs``), untimed.

    A timed block that commits (a btrfs snapshot commits a transaction) would
    otherwise also pay for writes made before it, by setup or by the other side.
    """
    subprocess.run(["sync", "-f", str(path)], check=True)


def drop_caches(path: Path) -> str | None:
    """Drop the page cache for a cold read of ``path``'s filesystem; ``None`` on success, else why not permitted.

    Only that filesystem, and the image file of its loop device (written through the
    host's page cache), are written back first: a global sync would also wait for every
    other writer on the machine, and their dirty pages are not ours to drop.
    """
    settle(path)
    image = _loop_backing_file(path)
    if image is not None:
        subprocess.run(["sync", str(image)], check=True)
    try:
        with open("/proc/sys/vm/drop_caches", "w", encoding="ascii") as f:
            f.write("3\n")
    except OSError as exc:
        return f"cannot drop caches ({exc.strerror}); cold reads may be warm"
    return None


def disk_usage(path: Path) -> dict[str, int]:
    """Bytes used below ``path`` (``du``) and on its whole filesystem (``statfs``)."""
    du = subprocess.run(["du", "-sxb", str(path)], capture_output=True, text=True, check=False)
    st = os.statvfs(path)
    return {
        "du_bytes": int(du.stdout.split()[0]) if du.returncode == 0 and du.stdout else -1,
        "fs_used_bytes": (st.f_blocks - st.f_bfree) * st.f_frsize,
    }


def run_quiet(*argv: str, cwd: Path | None = None) -> None:
    """Run a reference command; a failure is an error, not a fast result."""
    subprocess.run(list(argv), cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
