"""Helpers the archive tests import (no tests here): hand-made tars, root-only skips, overlay mounts.

A plain module rather than conftest.py: ``from conftest import`` is ambiguous
once a subdirectory has its own conftest.
"""

from __future__ import annotations

import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from drivebay.fs.mounts import mount, unmount

IS_ROOT = os.geteuid() == 0

needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (chown, mknod, trusted.* xattrs or mounts)")


@dataclass(frozen=True)
class OverlayMount:
    """Directories for a kernel overlay mount in a test's temporary directory."""

    lower: Path
    upper: Path
    work: Path
    merged: Path

    def mount(self) -> None:
        """Mount ``merged`` once the test has filled ``lower``."""
        mount(
            "overlay", self.merged, "overlay", data=f"lowerdir={self.lower},upperdir={self.upper},workdir={self.work}"
        )

    def unmount(self) -> None:
        """Unmount ``merged`` so that ``upper`` can be read alone."""
        unmount(self.merged)


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
