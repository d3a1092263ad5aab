"""Netlink sockets inside other network namespaces, without forking.

A netlink socket belongs to the namespace its creating thread was in. So the
calling thread switches into the sandbox with ``setns(2)``, opens the socket
and switches straight back; the socket keeps working in the sandbox. pyroute2's
own ``netns=`` support forks a helper process for the same job, which costs
more than the whole connect.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pyroute2 import IPRoute

from drivebay.errors import InvalidConfig

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextmanager
def opened(netns: Path) -> Iterator[int]:
    """A file descriptor of the namespace at ``netns`` for the block."""
    try:
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise InvalidConfig(f"network namespace '{netns}' cannot be opened ({exc.strerror}); create it first") from exc
    try:
        yield fd
    finally:
        os.close(fd)


@contextmanager
def entered(netns: Path) -> Iterator[None]:
    """Run the block with the calling thread inside the namespace at ``netns``."""
    with opened(netns) as target:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            try:
                _setns(target)
            except OSError as exc:
                if exc.errno == errno.EINVAL:
                    raise InvalidConfig(f"'{netns}' is not a network namespace") from exc
                raise
            try:
                yield
            finally:
                _setns(home)
        finally:
            os.close(home)


@contextmanager
def socket_in(netns: Path) -> Iterator[IPRoute]:
    """An rtnetlink socket that acts inside the namespace at ``netns``, for the block."""
    with entered(netns):
        ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def namespace_alive(netns: Path) -> bool:
    """Whether ``netns`` still opens as a namespace (it may have been deleted behind our back)."""
    try:
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True
