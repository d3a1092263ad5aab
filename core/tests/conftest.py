"""Shared fixtures of the core tests: root-only skips, the Docker fixture files, overlay mounts."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from drivebay.fs.mounts import mount, unmount, unmount_all_under

IS_ROOT = os.geteuid() == 0
FIXTURES_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"

needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (chown, mknod, trusted.* xattrs or mounts)")


@pytest.fixture
def fixtures_dir() -> Path:
    """``/work/shared/fixtures`` (found relative to the repo); skips when absent."""
    if not (FIXTURES_DIR / "basic-docker.tar").is_file():
        pytest.skip(f"Docker fixture set A is not at {FIXTURES_DIR}")
    return FIXTURES_DIR


@dataclass(frozen=True)
class OverlayMount:
    """A kernel overlay mount made in a test's temporary directory."""

    lower: Path
    upper: Path
    work: Path
    merged: Path


def _overlay_supported() -> str | None:
    if not IS_ROOT:
        return "mounting overlay needs root"
    with open("/proc/filesystems", encoding="ascii") as f:
        if "overlay" not in f.read().split():
            return "the kernel has no overlay filesystem"
    return None


@pytest.fixture
def overlay_mount(tmp_path: Path) -> Iterator[OverlayMount]:
    """Empty ``lower``, ``upper``, ``work`` and ``merged`` directories in ``tmp_path``.

    The test fills ``lower`` and then calls :func:`mount_overlay`. Whatever is
    still mounted below ``tmp_path`` is unmounted at the end, failures included.
    """
    reason = _overlay_supported()
    if reason:
        pytest.skip(reason)
    paths = OverlayMount(*(tmp_path / name for name in ("lower", "upper", "work", "merged")))
    for path in (paths.lower, paths.upper, paths.work, paths.merged):
        path.mkdir()
    try:
        yield paths
    finally:
        unmount_all_under(tmp_path)


def mount_overlay(paths: OverlayMount) -> None:
    """Mount ``paths.merged`` once the test has filled ``paths.lower``."""
    data = f"lowerdir={paths.lower},upperdir={paths.upper},workdir={paths.work}"
    mount("overlay", paths.merged, "overlay", data=data)


def unmount_overlay(paths: OverlayMount) -> None:
    """Unmount ``paths.merged`` so that ``paths.upper`` can be read alone."""
    unmount(paths.merged)


def run(*argv: str) -> str:
    """Run a command, fail the test on a non-zero exit, return its stdout."""
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


@dataclass(frozen=True)
class Member:
    """One member of a hand-made tar: ``kind`` is file, dir, symlink, hardlink, fifo or char."""

    name: str
    kind: str = "file"
    data: bytes = b""
    target: str = ""
    mode: int = 0o644


_TAR_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "fifo": tarfile.FIFOTYPE,
    "char": tarfile.CHRTYPE,
}


def build_tar(*members: Member) -> bytes:
    """A tar (made by :mod:`tarfile`, not by the code under test) holding ``members`` in the given order."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            info = tarfile.TarInfo(member.name)
            info.type = _TAR_TYPES[member.kind]
            info.mode = member.mode
            info.mtime = 1_700_000_000
            info.linkname = member.target
            info.size = len(member.data)
            tar.addfile(info, io.BytesIO(member.data) if member.kind == "file" else None)
    return out.getvalue()
