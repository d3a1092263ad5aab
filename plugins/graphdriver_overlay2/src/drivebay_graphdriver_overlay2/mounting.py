"""The ways to mount an overlay stack: kernel overlayfs (new or legacy API) or a mount program.

Every way takes the same :class:`OverlayStack`, so the on-disk layout never
depends on which one mounted it.

- New mount API with ``lowerdir+`` (Linux 6.8): one ``fsconfig`` call per lower
  layer, no page limit; overlayfs itself stops at 500 lowers (OVL_MAX_STACK).
- Legacy ``mount(2)``: all options in one page. Paths relative to the home
  (``l/<short id>``, 29 bytes a layer) fit 128 lowers, moby's limit; the mount
  runs in a forked child that changes into the home, so this process's
  working directory never moves.
- A mount program (``fuse-overlayfs``), given the same options on its command line.
"""

from __future__ import annotations

import ctypes
import ctypes.util
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

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]


@dataclass(frozen=True)
class OverlayStack:
    """One overlay mount's directories, relative to ``home``; ``upper`` None means read-only."""

    home: Path
    lowers: tuple[str, ...]
    upper: str | None = None
    work: str | None = None

    def absolute(self, relative: str) -> str:
        return str(self.home / relative)

    def options(self, relative: bool = False) -> list[str]:
        """``lowerdir=...``, ``upperdir=...``, ``workdir=...``; absolute paths unless ``relative``."""
        path = (lambda p: p) if relative else self.absolute
        options = ["lowerdir=" + ":".join(path(lower) for lower in self.lowers)]
        if self.upper is not None and self.work is not None:
            options += [f"upperdir={path(self.upper)}", f"workdir={path(self.work)}"]
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

    def mount(self, stack: OverlayStack, target: Path) -> None: ...

    def unmount(self, target: Path) -> None: ...


class KernelOverlay:
    """The kernel's overlayfs, through the new mount API when it takes ``lowerdir+``."""

    def __init__(self, userxattr: bool) -> None:
        self.userxattr = userxattr
        # moby turns the inodes index off: it ties an upper dir to one set of lowers, which a re-mount may change.
        self.index_off = kernel_parameter("index") is not None
        self.new_api = lowerdir_append_supported()

    def describe(self) -> str:
        api = "new mount API, lowerdir+" if self.new_api else "mount(2), relative paths"
        return f"kernel overlay ({api})"

    def extra_options(self) -> list[str]:
        return (["index=off"] if self.index_off else []) + (["userxattr"] if self.userxattr else [])

    def mount(self, stack: OverlayStack, target: Path) -> None:
        if self.new_api:
            self._mount_new_api(stack, target)
        else:
            self._mount_legacy(stack, target)

    def _mount_new_api(self, stack: OverlayStack, target: Path) -> None:
        with FsContext("overlay") as ctx:
            for option in self.extra_options():
                key, _, value = option.partition("=")
                if value:
                    ctx.set_string(key, value)
                else:
                    ctx.set_flag(key)
            for lower in stack.lowers:
                ctx.set_string("lowerdir+", stack.absolute(lower))
            if stack.upper is not None and stack.work is not None:
                ctx.set_string("upperdir", stack.absolute(stack.upper))
                ctx.set_string("workdir", stack.absolute(stack.work))
            ctx.mount(target, MOUNT_ATTR_RDONLY if stack.upper is None else 0)

    def _mount_legacy(self, stack: OverlayStack, target: Path) -> None:
        data = ",".join(self.extra_options() + stack.options(relative=True))
        if len(data) >= PAGE_SIZE:
            raise MountError(
                f"overlay mount data for {target} is {len(data)} bytes, over the {PAGE_SIZE}-byte page that "
                f"mount(2) takes ({len(stack.lowers)} lowers); use a kernel with overlayfs lowerdir+ (Linux 6.8)"
            )
        mount_in_directory(stack.home, target, data, mounts.MS_RDONLY if stack.upper is None else 0)

    def unmount(self, target: Path) -> None:
        mounts.unmount(target)


def mount_in_directory(directory: Path, target: Path, data: str, flags: int) -> None:
    """mount(2) an overlay whose ``data`` holds paths relative to ``directory``.

    A forked child changes into ``directory`` and mounts, as moby's
    ``mountFrom`` does, so this process's working directory never changes.
    """
    target = target.absolute()
    pid = os.fork()
    if pid == 0:
        # The child only changes directory, mounts and exits; it must never return into the caller's code.
        code = 0
        try:
            os.chdir(directory)
            if _libc.mount(b"overlay", os.fsencode(target), b"overlay", flags, data.encode()) != 0:
                code = ctypes.get_errno() or 255
        except OSError as exc:
            code = exc.errno or 255
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        reason = os.strerror(code) if 0 < code < 255 else f"exit status {code}"
        raise MountError(f"overlay mount of {target} from {directory} failed: {reason} (options {data[:200]}...)")


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
