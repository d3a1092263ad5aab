"""Wall and CPU time of a block, cache dropping, and disk usage."""

from __future__ import annotations

import os
import resource
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


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


def drop_caches() -> str | None:
    """Drop the page cache for a cold read; ``None`` on success, else why it was not permitted."""
    os.sync()
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
