"""Applying a layer tar to a directory, like moby's ``archive.ApplyLayer``, without ever writing outside it.

The apply itself is C (``_tarapply.c``): reading the tar, the safety checks,
creating members and whiteouts. Per-member work in Python, or through
libarchive, cost more CPU than GNU tar's whole run. This module checks the
arguments and turns the errors the C code reports into drivebay's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from drivebay.archive import _tarapply
from drivebay.archive.whiteouts import DRIVER_XATTR_PREFIXES, OVERLAY_OPAQUE_XATTR, WhiteoutFormat
from drivebay.errors import ArchiveIOError, DrivebayError, InvalidArchive, UnsafeArchive

_WHITEOUTS = {
    WhiteoutFormat.DELETE: _tarapply.DELETE,
    WhiteoutFormat.OVERLAY: _tarapply.OVERLAY,
    WhiteoutFormat.AUFS: _tarapply.AUFS,
}
_ERRORS: dict[int, type[DrivebayError]] = {
    _tarapply.UNSAFE: UnsafeArchive,
    _tarapply.INVALID: InvalidArchive,
    _tarapply.IO: ArchiveIOError,
}


def apply_layer_tar(tar: BinaryIO, root: Path, whiteouts: WhiteoutFormat) -> int:
    """Extract the uncompressed layer tar ``tar`` into ``root``; return the bytes of regular files written.

    ``.wh.NAME`` members delete NAME and ``.wh..wh..opq`` makes its directory
    opaque, stored the way ``whiteouts`` says (``DELETE``: really deleted;
    ``OVERLAY``: char device 0/0 and the opaque xattr; ``AUFS``: the marker
    files are kept). A member replacing a path of another type removes it
    first; existing directories are kept and get the member's metadata.
    Owner (when running as root, like GNU tar), mode, xattrs (but not a
    driver's own, see ``DRIVER_XATTR_PREFIXES``) and nanosecond mtimes are
    restored. The tar may be ustar, PAX or GNU (long names, base-256 numbers).

    ``tar`` is read through its ``readinto`` (or ``read``), to its end, so
    that a caller hashing the stream sees every byte. An empty stream is an
    empty layer. The GIL is released while members are written; the caller's
    working directory and umask are left alone, so applies may run in
    several threads at once.

    Raises ``UnsafeArchive`` for a member that would write outside ``root``
    (absolute name, ``..``, a symlink among its parents, a hardlink out of the
    layer, a whiteout of ``.`` or ``..``), ``InvalidArchive`` for a malformed
    or truncated tar and ``ArchiveIOError`` when the disk refuses a write. An
    exception raised by the stream propagates unchanged. On error, ``root``
    is left half-applied; the caller removes it.
    """
    if not isinstance(whiteouts, WhiteoutFormat):
        raise TypeError(f"whiteouts must be a WhiteoutFormat, not {whiteouts!r}")
    size, kind, message = _tarapply.apply(
        tar, os.fspath(root), _WHITEOUTS[whiteouts], DRIVER_XATTR_PREFIXES, OVERLAY_OPAQUE_XATTR
    )
    if kind:
        raise _ERRORS[kind](message)
    return size
