"""Facts about the machine a bench ran on, for the JSON and the README table."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime

from drivebay import __version__


def _first_line(*argv: str) -> str:
    try:
        result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return "not installed"
    text = (result.stdout or result.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def _cpu_model() -> str:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_info() -> dict[str, object]:
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "kernel": platform.release(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_bytes": pages,
        "python": platform.python_version(),
        "drivebay": __version__,
        "filesystem_tools": {
            "mkfs.ext4": _first_line("mke2fs", "-V"),
            "mkfs.xfs": _first_line("mkfs.xfs", "-V"),
            "btrfs": _first_line("btrfs", "--version"),
            "fuse-overlayfs": _first_line("fuse-overlayfs", "--version"),
            "tar": _first_line("tar", "--version"),
        },
    }


def docker_reachable() -> str | None:
    """``None`` when ``docker info`` works, else why the Docker comparison is skipped."""
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=20, check=False)
    except FileNotFoundError:
        return "no docker client installed"
    except subprocess.TimeoutExpired:
        return "docker info timed out"
    if result.returncode != 0:
        return "docker info failed: " + (result.stderr.strip().splitlines() or ["no engine"])[-1]
    return None
