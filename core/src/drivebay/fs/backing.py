"""Facts about the filesystem a directory lives on, and the filesystems this kernel knows."""

from __future__ import annotations

import os
from pathlib import Path

from drivebay.fs.mounts import MountEntry, mount_table

# statfs f_type magic numbers, from linux/magic.h.
FS_MAGIC = {
    0xEF53: "ext4",
    0x58465342: "xfs",
    0x9123683E: "btrfs",
    0x01021994: "tmpfs",
    0x794C7630: "overlay",
    0x65735546: "fuse",
    0x61756673: "aufs",
    0x2FC12FC1: "zfs",
    0x5346544E: "ntfs",
    0x6969: "nfs",
}


def nearest_existing(path: Path) -> Path:
    """``path`` made absolute, or its nearest parent that exists (a home not made yet lives on its parent's fs)."""
    path = Path(os.path.abspath(path))
    while not path.exists():
        path = path.parent
    return path


def mount_holding(path: Path) -> MountEntry | None:
    """The mount holding ``path`` (or its nearest existing parent): the deepest, and the last of stacked ones."""
    target = Path(os.path.realpath(nearest_existing(path)))
    best = None
    for entry in mount_table():
        covers = target == entry.mount_point or entry.mount_point in target.parents
        if covers and (best is None or len(entry.mount_point.parts) >= len(best.mount_point.parts)):
            best = entry
    return best


def backing_filesystem(path: Path) -> str:
    """The type of the filesystem holding ``path`` (or its nearest existing parent)."""
    entry = mount_holding(path)
    return entry.fstype if entry else "unknown"


def kernel_filesystems() -> set[str]:
    """The filesystem types this kernel supports now (``/proc/filesystems``; a module not yet loaded is absent)."""
    with open("/proc/filesystems", encoding="ascii") as f:
        return {line.split()[-1] for line in f if line.strip()}
