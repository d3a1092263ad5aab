"""Scratch filesystems for tests, and filling them up.

:func:`scratch_filesystem_or_skip` is :func:`drivebay.fs.loopfs.scratch_filesystem`
for a test: where this host cannot make the filesystem (not root, no mkfs, no
kernel support) the test is skipped with that reason instead of failing.
:func:`write_random` fills a file the way quota tests need, so that a limit is
hit during the writes rather than hidden in the page cache.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from drivebay.fs.loopfs import can_make, scratch_filesystem

_BLOCK = 1 << 20


@contextmanager
def scratch_filesystem_or_skip(
    fstype: str,
    size_mb: int = 512,
    parent: Path | None = None,
    mkfs_args: tuple[str, ...] = (),
    mount_options: tuple[str, ...] = (),
    refused: str | None = None,
) -> Iterator[Path]:
    """Yield the mount point of a fresh loop-mounted ``fstype`` (or tmpfs); skip the test if none can be made.

    With ``refused`` (what the host lacks, in words), a mkfs or mount that fails on the
    ``mkfs_args`` or ``mount_options`` asked for skips the test too, instead of failing it.
    """
    if os.geteuid() != 0:
        pytest.skip(f"mounting a scratch {fstype} needs root")
    reason = can_make(fstype)
    if reason:
        pytest.skip(f"cannot make a scratch {fstype}: {reason}")
    with ExitStack() as stack:
        try:
            mount_point = stack.enter_context(
                scratch_filesystem(fstype, size_mb, parent, mkfs_args=mkfs_args, mount_options=mount_options)
            )
        except subprocess.CalledProcessError as exc:
            if refused is None:
                raise
            said = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
            pytest.skip(f"{refused}: {said[0] if said else f'exit {exc.returncode}'}")
        yield mount_point


def write_random(path: Path, size: int) -> None:
    """Write ``size`` incompressible bytes to ``path``, syncing each MiB so a quota stops the write itself.

    Raises the ``OSError`` (``EDQUOT``, ``ENOSPC``) of the first write or sync the filesystem refuses.
    """
    block = os.urandom(_BLOCK)
    with open(path, "wb") as f:
        for start in range(0, size, _BLOCK):
            f.write(block[: min(_BLOCK, size - start)])
            f.flush()
            os.fsync(f.fileno())
