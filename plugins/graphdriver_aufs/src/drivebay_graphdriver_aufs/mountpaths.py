"""The two ways to mount aufs branches: the kernel's aufs, or fuse-overlayfs.

Both take the same branch directories, the writable one (if any) and the
read-only ones nearest first, so the on-disk format never depends on which
path mounted it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Protocol

from drivebay.errors import MountError
from drivebay.fs.backing import kernel_filesystems
from drivebay.fs.mounts import MS_REMOUNT, mount

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
FUSE_WHITEOUT_ENV = "FUSE_OVERLAYFS_DISABLE_OVL_WHITEOUT"


class MountPath(Protocol):
    name: str

    def describe(self) -> str: ...

    def mount(self, rw_branch: Path | None, ro_branches: list[Path], work: Path, target: Path) -> None: ...


def kernel_aufs_reason() -> str | None:
    """``None`` when the kernel has aufs (loading the module if needed), else why not."""
    if "aufs" in kernel_filesystems():
        return None
    if shutil.which("modprobe"):
        subprocess.run(["modprobe", "aufs"], capture_output=True, check=False)
        if "aufs" in kernel_filesystems():
            return None
    return "the kernel has no aufs module"


def fuse_reason() -> str | None:
    """``None`` when fuse-overlayfs can mount here, else what to install."""
    if shutil.which("fuse-overlayfs") is None:
        return "fuse-overlayfs is not installed (apt-get install fuse-overlayfs)"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing (load the fuse module)"
    return None


class KernelAufs:
    """Mount with moby's aufs options; branches past one page go in by remount, as moby does."""

    name = "kernel aufs"

    def describe(self) -> str:
        return "kernel aufs module"

    def mount(self, rw_branch: Path | None, ro_branches: list[Path], work: Path, target: Path) -> None:
        branches = ([f"{rw_branch}=rw"] if rw_branch else []) + [f"{b}=ro+wh" for b in ro_branches]
        options = ",dio,xino=/dev/shm/aufs.xino,dirperm1"
        first = f"br:{branches[0]}"
        index = 1
        while index < len(branches) and len(first) + len(branches[index]) + len(options) + 2 < PAGE_SIZE:
            first += f":{branches[index]}"
            index += 1
        mount("none", target, "aufs", 0, first + options)
        for branch in branches[index:]:
            mount("none", target, "aufs", MS_REMOUNT, f"append:{branch}")


class FuseOverlay:
    """Mount through fuse-overlayfs, told to write aufs-format whiteouts."""

    name = "fuse-overlayfs"

    def describe(self) -> str:
        result = subprocess.run(["fuse-overlayfs", "--version"], capture_output=True, text=True, check=False)
        for line in result.stdout.splitlines():
            if line.startswith("fuse-overlayfs"):
                return f"{line.strip()} (no kernel aufs module)"
        return "fuse-overlayfs (no kernel aufs module)"

    def mount(self, rw_branch: Path | None, ro_branches: list[Path], work: Path, target: Path) -> None:
        options = [f"lowerdir={':'.join(map(str, ro_branches))}"]
        if rw_branch is not None:
            work.mkdir(parents=True, exist_ok=True)
            options += [f"upperdir={rw_branch}", f"workdir={work}"]
        env = {**os.environ, FUSE_WHITEOUT_ENV: "1"}
        result = subprocess.run(
            ["fuse-overlayfs", "-o", ",".join(options), str(target)], env=env, capture_output=True, text=True
        )
        if result.returncode != 0:
            raise MountError(
                f"fuse-overlayfs could not mount {target}: {result.stderr.strip() or 'exit ' + str(result.returncode)}"
            )


def choose_mount_path() -> MountPath | str:
    """The kernel path if aufs exists, else fuse-overlayfs, else the reason neither works."""
    if kernel_aufs_reason() is None:
        return KernelAufs()
    reason = fuse_reason()
    if reason is None:
        return FuseOverlay()
    return f"the kernel has no aufs module and {reason}"
