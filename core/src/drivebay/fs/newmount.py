"""The new mount API (fsopen, fsconfig, fsmount, move_mount) through ctypes.

mount(2) takes all filesystem options in one string of at most a page, which
is why moby's overlay2 stops at 128 lower layers. The new API sets each
parameter with its own ``fsconfig`` call, so overlayfs' ``lowerdir+`` (Linux
6.8) adds lower layers one by one with no page limit. The kernel also explains
a refusal in words through the context's message log, which
:class:`FsContext` puts into the ``MountError``.

The system call numbers below are shared by every architecture but alpha, which
Linux 5.1 gave a common table for new calls.
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path
from types import TracebackType

from drivebay.errors import MountError

SYS_MOVE_MOUNT = 429
SYS_FSOPEN = 430
SYS_FSCONFIG = 431
SYS_FSMOUNT = 432

FSOPEN_CLOEXEC = 0x1
FSMOUNT_CLOEXEC = 0x1
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
MOVE_MOUNT_F_EMPTY_PATH = 0x4
AT_FDCWD = -100

MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4

# libc is already loaded into the interpreter: ctypes.util.find_library("c") would run ``ldconfig -p``
# (about 1.5 ms) on every start of every command.
_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def _call(number: int, *args: object) -> tuple[int, int]:
    """Run a system call; returns ``(result, errno)``, errno 0 on success."""
    result = _syscall(ctypes.c_long(number), *args)
    return (result, ctypes.get_errno()) if result < 0 else (result, 0)


class FsContext:
    """One ``fsopen`` filesystem context: set parameters, then :meth:`mount` it once.

    Use as a context manager so the context's file descriptor is always closed.
    """

    def __init__(self, fstype: str) -> None:
        self.fstype = fstype
        fd, err = _call(SYS_FSOPEN, fstype.encode(), ctypes.c_uint(FSOPEN_CLOEXEC))
        if err:
            raise MountError(f"fsopen({fstype}) failed: {os.strerror(err)}{self._hint(err)}")
        self.fd = fd

    @staticmethod
    def _hint(err: int) -> str:
        if err == errno.ENOSYS:
            return " (the kernel predates the new mount API, Linux 5.2)"
        if err == errno.ENODEV:
            return " (the kernel has no such filesystem)"
        return ""

    def __enter__(self) -> FsContext:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def messages(self) -> list[str]:
        """Drain the kernel's log for this context (``e overlayfs: ...`` lines, prefix stripped)."""
        found: list[str] = []
        while True:
            try:
                line = os.read(self.fd, 1024)
            except OSError as exc:
                if exc.errno in (errno.ENODATA, errno.EAGAIN):
                    return found
                raise MountError(f"reading the {self.fstype} mount context's messages failed: {exc}") from exc
            if not line:
                return found
            text = line.decode(errors="replace").rstrip("\n")
            found.append(text[2:] if text[1:2] == " " else text)

    def _failed(self, what: str, err: int) -> MountError:
        said = "; ".join(self.messages())
        return MountError(f"{self.fstype} mount: {what} failed: {os.strerror(err)}" + (f" ({said})" if said else ""))

    def set_flag(self, key: str) -> None:
        _, err = _call(SYS_FSCONFIG, ctypes.c_int(self.fd), ctypes.c_uint(FSCONFIG_SET_FLAG), key.encode(), None, 0)
        if err:
            raise self._failed(f"option {key}", err)

    def set_string(self, key: str, value: str) -> None:
        _, err = _call(
            SYS_FSCONFIG,
            ctypes.c_int(self.fd),
            ctypes.c_uint(FSCONFIG_SET_STRING),
            key.encode(),
            os.fsencode(value),
            0,
        )
        if err:
            raise self._failed(f"option {key}={value}", err)

    def mount(self, target: Path, attrs: int = 0) -> None:
        """Create the superblock and attach it at ``target`` with mount attributes ``attrs``."""
        _, err = _call(SYS_FSCONFIG, ctypes.c_int(self.fd), ctypes.c_uint(FSCONFIG_CMD_CREATE), None, None, 0)
        if err:
            raise self._failed(f"creating the filesystem for {target}", err)
        mount_fd, err = _call(SYS_FSMOUNT, ctypes.c_int(self.fd), ctypes.c_uint(FSMOUNT_CLOEXEC), ctypes.c_uint(attrs))
        if err:
            raise self._failed(f"fsmount for {target}", err)
        try:
            _, err = _call(
                SYS_MOVE_MOUNT,
                ctypes.c_int(mount_fd),
                b"",
                ctypes.c_int(AT_FDCWD),
                os.fsencode(target),
                ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH),
            )
            if err:
                raise self._failed(f"attaching at {target}", err)
        finally:
            os.close(mount_fd)


def accepts_parameter(fstype: str, key: str, value: str) -> bool:
    """Whether this kernel has the new mount API and ``fstype`` accepts ``key=value``.

    Nothing is mounted; the probe context is thrown away. Used to find out,
    for example, whether overlayfs takes ``lowerdir+`` (Linux 6.8).
    """
    try:
        with FsContext(fstype) as ctx:
            ctx.set_string(key, value)
    except MountError:
        return False
    return True
