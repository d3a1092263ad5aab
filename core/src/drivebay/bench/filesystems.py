"""The filesystems a bench runs on: fresh loop-mounted images, a tmpfs, or a user's directory."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from drivebay.bench.measure import Phases
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
def provisioned(target: FsTarget, size_mb: int, phases: Phases) -> Iterator[Path]:
    """A fresh directory on ``target``; everything made is removed afterwards, failures included."""
    with ExitStack() as stack:
        with phases.phase("provision"):
            if target.fstype is None:
                assert target.path is not None
                mount_point = Path(tempfile.mkdtemp(prefix="drivebay-bench-", dir=target.path))
                stack.callback(shutil.rmtree, mount_point, ignore_errors=True)
            else:
                mount_point = stack.enter_context(scratch_filesystem(target.fstype, size_mb=size_mb))
        try:
            yield mount_point
        finally:
            with phases.phase("provision"):
                unmount_all_under(mount_point)
                stack.close()


@contextmanager
def data_cache(size_mb: int, phases: Phases) -> Iterator[Path]:
    """Where a run's generated data lives: a tmpfs of its own when root may mount one, else a temp directory."""
    with ExitStack() as stack:
        with phases.phase("provision"):
            if os.geteuid() == 0:
                cache = stack.enter_context(scratch_filesystem("tmpfs", size_mb=size_mb))
            else:
                cache = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="drivebay-bench-data-")))
        try:
            yield cache
        finally:
            with phases.phase("provision"):
                stack.close()
