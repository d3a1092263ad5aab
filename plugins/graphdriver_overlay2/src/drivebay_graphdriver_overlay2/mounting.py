"""The ways to mount an overlay stack: kernel overlayfs (mount(2) or the new API) or a mount program.

Every way takes the same :class:`OverlayStack`, so the on-disk layout never
depends on which one mounted it.

- Kernel overlayfs, with paths relative to the home (``l/<short id>``, 29
  bytes a layer), in this thread's working directory only
  (:func:`drivebay.fs.mounts.thread_working_directory`), so the process's never moves:
  - ``mount(2)`` while the options fit its one page: moby's 128 lowers do. One
    system call, the cheapest way;
  - past a page, the new mount API with ``lowerdir+`` (Linux 6.8): one ``fsconfig``
    call per lower layer, no page limit; overlayfs itself stops at 500 lowers (OVL_MAX_STACK).
- A mount program (``fuse-overlayfs``), given the same options on its command line.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from drivebay.errors import MountError
from drivebay.fs import mounts
from drivebay.fs.newmount import MOUNT_ATTR_RDONLY, FsContext, accepts_parameter

OVERLAY_PARAMETERS = Path("/sys/module/overlay/parameters")
# OVL_MAX_STACK in fs/overlayfs/params.h.
KERNEL_MAX_LOWERS = 500
# moby's limit: what fits in one page of mount data with relative 26-character short ids.
LEGACY_MAX_LOWERS = 128
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class OverlayStack:
    """One overlay mount's directories, relative to ``home``; ``upper`` None means read-only."""

    home: Path
    lowers: tuple[str, ...]
    upper: str | None = None
    work: str | None = None

    @functools.cached_property
    def relative_data(self) -> str:
        """:meth:`options` with relative paths, as mount(2) data; made once per stack (the driver keeps stacks)."""
        return ",".join(self.options(relative=True))

    def options(self, relative: bool = False) -> list[str]:
        """``lowerdir=...``, ``upperdir=...``, ``workdir=...``; absolute paths unless ``relative``."""
        # String joins, not pathlib: this runs on every mount, for up to 500 lowers.
        prefix = "" if relative else f"{self.home}/"
        options = ["lowerdir=" + prefix + f":{prefix}".join(self.lowers)]
        if self.upper is not None and self.work is not None:
            options += [f"upperdir={prefix}{self.upper}", f"workdir={prefix}{self.work}"]
        return options


@functools.cache
def lowerdir_append_supported() -> bool:
    """Whether overlayfs takes ``lowerdir+`` through the new mount API (Linux 6.8)."""
    return accepts_parameter("overlay", "lowerdir+", "/")


def kernel_max_lowers() -> int:
    return KERNEL_MAX_LOWERS if lowerdir_append_supported() else LEGACY_MAX_LOWERS


def kernel_parameter(name: str) -> str | None:
    """A parameter of the overlay module (``Y``/``N`` for booleans), or None if this kernel lacks it."""
    try:
        return (OVERLAY_PARAMETERS / name).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None


class OverlayMounter(Protocol):
    def describe(self) -> str: ...

    def extra_options(self) -> list[str]:
        """Options besides the directories (``index=off``, ``userxattr``) that the mounts get."""
        ...

    def mount(self, stack: OverlayStack, target: Path) -> None: ...

    def unmount(self, target: Path) -> None: ...


class KernelOverlay:
    """The kernel's overlayfs: mount(2) while the options fit a page, else the new mount API's ``lowerdir+``."""

    def __init__(self, userxattr: bool) -> None:
        self.userxattr = userxattr
        # moby turns the inodes index off: it ties an upper dir to one set of lowers, which a re-mount may change.
        self.index_off = kernel_parameter("index") is not None
        self.new_api = lowerdir_append_supported()
        self._data_prefix = "".join(f"{option}," for option in self.extra_options())

    def describe(self) -> str:
        past_a_page = "new mount API, lowerdir+" if self.new_api else "refused"
        return f"kernel overlay (mount(2) with relative paths up to a page; past it: {past_a_page})"

    def extra_options(self) -> list[str]:
        return (["index=off"] if self.index_off else []) + (["userxattr"] if self.userxattr else [])

    def mount(self, stack: OverlayStack, target: Path) -> None:
        target = target.absolute()
        data = self._data_prefix + stack.relative_data
        if len(data) >= PAGE_SIZE:  # the page holds the terminating NUL too
            if not self.new_api:
                raise MountError(
                    f"overlay mount data for {target} is {len(data)} bytes, over the {PAGE_SIZE}-byte page that "
                    f"mount(2) takes ({len(stack.lowers)} lowers); use a kernel with overlayfs lowerdir+ (Linux 6.8)"
                )
            self._mount_new_api(stack, target)
            return
        flags = mounts.MS_RDONLY if stack.upper is None else 0
        try:
            mounts.mount_relative(stack.home, "overlay", target, "overlay", flags, data)
        except MountError as exc:
            if not self.new_api:
                raise MountError(f"{exc} (paths relative to {stack.home})") from exc
            # mount(2) tells only an errno; fsconfig names the option it refuses and the kernel's reason.
            # Replaying the same options there raises that error (or mounts, if the failure has passed).
            self._mount_new_api(stack, target)

    def _mount_new_api(self, stack: OverlayStack, target: Path) -> None:
        """Mount through ``fsconfig``, one call per option, with the paths relative to the stack's home."""
        with mounts.thread_working_directory(stack.home), FsContext("overlay") as ctx:
            for option in self.extra_options():
                key, _, value = option.partition("=")
                if value:
                    ctx.set_string(key, value)
                else:
                    ctx.set_flag(key)
            for lower in stack.lowers:
                ctx.set_string("lowerdir+", lower)
            if stack.upper is not None and stack.work is not None:
                ctx.set_string("upperdir", stack.upper)
                ctx.set_string("workdir", stack.work)
            ctx.mount(target, MOUNT_ATTR_RDONLY if stack.upper is None else 0)

    def unmount(self, target: Path) -> None:
        mounts.unmount(target)


class ProgramOverlay:
    """A FUSE mount program such as fuse-overlayfs, for hosts where kernel overlay can't be used."""

    def __init__(self, program: str) -> None:
        self.program = program

    def describe(self) -> str:
        result = subprocess.run([self.program, "--version"], capture_output=True, text=True, check=False)
        # fuse-overlayfs prints fusermount's version first; find the program's own line.
        name = Path(self.program).name
        own = next((line.strip() for line in result.stdout.splitlines() if line.startswith(name)), "")
        return f"{self.program} ({own})" if own else self.program

    def extra_options(self) -> list[str]:
        return []

    def mount(self, stack: OverlayStack, target: Path) -> None:
        result = subprocess.run(
            [self.program, "-o", ",".join(stack.options()), str(target)], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            said = result.stderr.strip() or f"exit status {result.returncode}"
            raise MountError(f"{self.program} could not mount {target}: {said}")

    def unmount(self, target: Path) -> None:
        if os.geteuid() == 0 or shutil.which("fusermount3") is None:
            mounts.unmount(target)
            return
        result = subprocess.run(["fusermount3", "-u", str(target)], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise MountError(f"fusermount3 -u {target} failed: {result.stderr.strip()}; is a process still using it?")
