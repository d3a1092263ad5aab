"""Attaching an image file to a free loop device, detached automatically at the last close.

mount(2) cannot take ``-o loop`` as mount(8) does, so the driver attaches the
file itself with ``LOOP_CONFIGURE`` and the autoclear flag: once the
filesystem on it is unmounted (or the mount failed and the driver closed the
device), the kernel detaches it. No loop device leaks, even after a crash.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from pathlib import Path

from drivebay.errors import MountError

LOOP_CONFIGURE = 0x4C0A
LOOP_CTL_GET_FREE = 0x4C82
LO_FLAGS_READ_ONLY = 1
LO_FLAGS_AUTOCLEAR = 4
_INFO64 = struct.Struct("=QQQQQIIII64s64s32sQQ")
_CONFIG = struct.Struct(f"=II{_INFO64.size}s64x")
_ATTEMPTS = 16


class LoopDevice:
    """An attached loop device; ``close`` drops this process's hold (the mount keeps it alive)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd

    def close(self) -> None:
        os.close(self.fd)


def attach(image: Path, read_only: bool) -> LoopDevice:
    """Attach ``image`` to a free loop device. Raises ``MountError`` naming the image."""
    flags = LO_FLAGS_AUTOCLEAR | (LO_FLAGS_READ_ONLY if read_only else 0)
    try:
        backing = os.open(image, (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC)
    except OSError as exc:
        raise MountError(f"cannot open loop image {image}: {exc.strerror}") from exc
    try:
        control = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        os.close(backing)
        raise MountError(f"cannot attach {image} to a loop device: /dev/loop-control: {exc.strerror}") from exc
    try:
        for _ in range(_ATTEMPTS):
            number = fcntl.ioctl(control, LOOP_CTL_GET_FREE)
            device = Path(f"/dev/loop{number}")
            fd = os.open(device, (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC)
            info = _INFO64.pack(0, 0, 0, 0, 0, 0, 0, 0, flags, os.fsencode(image)[:63], b"", b"", 0, 0)
            try:
                fcntl.ioctl(fd, LOOP_CONFIGURE, _CONFIG.pack(backing, 0, info))
            except OSError as exc:
                os.close(fd)
                if exc.errno == errno.EBUSY:  # another process took it between GET_FREE and CONFIGURE
                    continue
                raise MountError(f"cannot attach {image} to {device}: {exc.strerror}") from exc
            return LoopDevice(device, fd)
        raise MountError(f"cannot attach {image}: every free loop device was taken by others; try again")
    finally:
        os.close(control)
        os.close(backing)
