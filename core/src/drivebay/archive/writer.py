"""Writing layer tars: a whole tree, or a list of changes, in sorted, reproducible order.

Members come in tree order: a directory, then its children sorted by the bytes
of their tar names, each child directory followed by its own subtree. The
same tree therefore always gives the same bytes. Nothing depends on readdir
order, atime, ctime or user names.

The walk, the reads and the header encoding are the C extension
``_tarwrite`` (one codec for both functions here); it encodes members byte for
byte as :func:`drivebay.archive.tarformat.encode_header` does. Inodes with more
than one link are written once, as a file, at their first name; later names
become hardlink members pointing to it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from drivebay.archive import _tarwrite
from drivebay.archive.whiteouts import DRIVER_XATTR_PREFIXES, WHITEOUT_PREFIX, WhiteoutFormat
from drivebay.errors import ArchiveIOError, DrivebayError, InvalidArchive
from drivebay.hookspecs.graph import Change, ChangeKind

_ERRORS: dict[str, type[DrivebayError]] = {"unreadable": ArchiveIOError, "invalid": InvalidArchive}


def _tar_writer(out: BinaryIO, exclude_xattr_prefixes: tuple[str, ...]) -> _tarwrite.TarWriter:
    prefixes = tuple(os.fsencode(prefix) for prefix in DRIVER_XATTR_PREFIXES + exclude_xattr_prefixes)
    return _tarwrite.TarWriter(out.write, prefixes)


@contextmanager
def _drivebay_errors() -> Iterator[None]:
    """Turn what the C writer reports into drivebay errors (``out.write``'s own pass unchanged)."""
    try:
        yield
    except _tarwrite.WriteError as exc:
        kind, message = exc.args
        raise _ERRORS[kind](message) from exc


def write_tree_tar(
    out: BinaryIO, root: Path, whiteouts: WhiteoutFormat, exclude_xattr_prefixes: tuple[str, ...] = ()
) -> None:
    """Write every entry below ``root`` (not ``root`` itself) to ``out`` as a layer tar.

    On-disk whiteouts of format ``whiteouts`` become ``.wh.NAME`` members and
    opaque directories get a ``.wh..wh..opq`` member right after their own;
    aufs bookkeeping is left out. Xattrs starting with one of
    ``exclude_xattr_prefixes`` (and those drivers keep for themselves) are
    not written. ``out.write`` gets chunks of about 1 MiB. Raises
    ``ArchiveIOError`` if an entry cannot be read or vanishes while being written.
    """
    tar = _tar_writer(out, exclude_xattr_prefixes)
    with _drivebay_errors():
        tar.write_tree(os.fsencode(root), whiteouts.value)
        tar.finish()


def _tree_key(member: str) -> bytes:
    """``member``'s place in tree order, as one bytes object (one C comparison per pair, not one per part).

    Tree order compares paths part by part, a directory's own name before
    anything below it. With each ``/`` made NUL, a byte no name can hold and
    lower than any it can, plain bytes order is that order.
    """
    return member.encode("utf-8", "surrogateescape").replace(b"/", b"\0")


def write_changes_tar(out: BinaryIO, root: Path, changes: Iterable[Change]) -> None:
    """Write the changed paths of ``root`` to ``out`` as a layer tar, like ``docker export`` of a diff.

    Added and modified paths are read from ``root``; every parent directory of
    a change is included, as Docker does. A deleted path (a whole deleted tree
    too) becomes one ``.wh.NAME`` member. Raises ``ArchiveIOError`` if a
    changed path cannot be read.
    """
    members: dict[str, bool] = {}  # member name -> is a whiteout
    for change in changes:
        path = change.path.strip("/")
        if not path:
            continue
        head, _, leaf = path.rpartition("/")
        if change.kind is ChangeKind.DELETE:
            members[f"{head}/{WHITEOUT_PREFIX}{leaf}" if head else WHITEOUT_PREFIX + leaf] = True
        else:
            members[path] = False
        # A directory already listed has its own parents listed too: stop there.
        while head and head not in members:
            members[head] = False
            head = head.rpartition("/")[0]
    tar = _tar_writer(out, ())
    top = os.fsencode(root)
    with _drivebay_errors():
        for key, whiteout in sorted((_tree_key(member), whiteout) for member, whiteout in members.items()):
            name = key.replace(b"\0", b"/")
            if whiteout:
                tar.add_whiteout(name)
            else:
                tar.add_path(top, name)
        tar.finish()
