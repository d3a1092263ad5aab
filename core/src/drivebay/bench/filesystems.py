"""The filesystems a bench runs on: fresh loop-mounted images, a tmpfs, or a user's directory."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from drivebay.errors import UsageError
from drivebay.fs.loopfs import MKFS, can_make, scratch_filesystem
from drivebay.fs.mounts import unmount_all_under

NAMED = ("tmpfs", *MKFS)


@dataclass(frozen=True)
class FsTarget:
    """``label`` is what tables show: a filesystem type, or the user's path."""

    label: str
    fstype: str | None
    path: Path | None = None

    def unavailable(self) -> str | None:
        if self.fstype is None:
            return None
        if os.geteuid() != 0:
            return f"making a {self.fstype} filesystem needs root (loop devices and mounts); benchmark a PATH instead"
        return can_make(self.fstype)


def parse_targets(values: list[str]) -> list[FsTarget]:
    """``--fs`` values: a type from :data:`NAMED`, or an existing directory."""
    targets = []
    for value in values:
        if value in NAMED:
            targets.append(FsTarget(value, value))
        elif "/" in value or os.path.isdir(value):
            path = Path(value).resolve()
            if not path.is_dir():
                raise UsageError(
                    f"--fs {value}: no such directory; give an existing directory or one of {', '.join(NAMED)}"
                )
            targets.append(FsTarget(str(path), None, path))
        else:
            raise UsageError(f"unknown filesystem '{value}'; choose from {', '.join(NAMED)} or give a directory path")
    return targets


def default_targets() -> list[FsTarget]:
    return [FsTarget(name, name) for name in NAMED if FsTarget(name, name).unavailable() is None]


@contextmanager
def provisioned(target: FsTarget, size_mb: int) -> Iterator[Path]:
    """A fresh directory on ``target``; everything made is removed afterwards, failures included."""
    if target.fstype is None:
        assert target.path is not None
        workdir = Path(tempfile.mkdtemp(prefix="drivebay-bench-", dir=target.path))
        try:
            yield workdir
        finally:
            unmount_all_under(workdir)
            shutil.rmtree(workdir, ignore_errors=True)
        return
    with scratch_filesystem(target.fstype, size_mb=size_mb) as mount_point:
        try:
            yield mount_point
        finally:
            unmount_all_under(mount_point / "roots")
