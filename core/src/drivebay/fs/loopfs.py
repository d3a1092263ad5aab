"""Scratch filesystems: a loop-mounted image file of a given type, or a tmpfs.

Tests, the conformance suite and ``drivebay bench`` use these so that a driver
runs on the filesystem it needs (btrfs, xfs) without touching the host's
disks. Everything made is unmounted, detached and deleted on exit, failures
included.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from drivebay.errors import DriverNotSupported
from drivebay.fs.backing import kernel_filesystems
from drivebay.fs.mounts import mount, unmount

MKFS = {
    "ext4": ["mkfs.ext4", "-q", "-F"],
    "xfs": ["mkfs.xfs", "-q", "-f"],
    "btrfs": ["mkfs.btrfs", "-q", "-f"],
}


def can_make(fstype: str) -> str | None:
    """``None`` if :func:`scratch_filesystem` can make ``fstype`` here, else why not."""
    if fstype == "tmpfs":
        return None
    if fstype not in MKFS:
        return f"unknown filesystem type '{fstype}' (choose from tmpfs, {', '.join(MKFS)})"
    if shutil.which(MKFS[fstype][0]) is None:
        return f"{MKFS[fstype][0]} is not installed"
    if shutil.which("losetup") is None:
        return "losetup is not installed"
    if fstype not in kernel_filesystems():
        return f"the kernel has no {fstype} support"
    return None


@contextmanager
def scratch_filesystem(
    fstype: str,
    size_mb: int = 512,
    parent: Path | None = None,
    mkfs_args: tuple[str, ...] = (),
    mount_options: tuple[str, ...] = (),
) -> Iterator[Path]:
    """Yield the mount point of a fresh ``fstype`` filesystem; remove it all afterwards.

    ``mkfs_args`` go to mkfs before the image, ``mount_options`` to ``mount -o`` after ``loop``
    (for tmpfs, after ``size``). A failing mkfs or mount raises ``subprocess.CalledProcessError``.
    """
    reason = can_make(fstype)
    if reason:
        raise DriverNotSupported(f"scratch {fstype}", reason)
    workdir = Path(tempfile.mkdtemp(prefix=f"drivebay-{fstype}-", dir=parent))
    mount_point = workdir / "mnt"
    mount_point.mkdir()
    try:
        if fstype == "tmpfs":
            mount("tmpfs", mount_point, "tmpfs", data=",".join((f"size={size_mb}m", *mount_options)))
        else:
            image = workdir / "image"
            with open(image, "wb") as f:
                f.truncate(size_mb * 1024 * 1024)
            subprocess.run([*MKFS[fstype], *mkfs_args, str(image)], check=True, capture_output=True)
            # mount(8) sets up the loop device with autoclear, so unmounting detaches it.
            options = ",".join(("loop", *mount_options))
            subprocess.run(["mount", "-o", options, str(image), str(mount_point)], check=True, capture_output=True)
        try:
            yield mount_point
        finally:
            subprocess.run(["umount", "-R", str(mount_point)], check=False, capture_output=True)
            if subprocess.run(["mountpoint", "-q", str(mount_point)], check=False).returncode == 0:
                unmount(mount_point, lazy=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
