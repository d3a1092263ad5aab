"""Layer contents the suite builds: the same entries as a layer tar and as a reference tree.

A layer is a list of :class:`Node` (parents before children, as in a Docker
layer tar). :func:`layer_tar` writes it with Python's ``tarfile``, a tar writer
independent of drivebay's own, so the suite checks drivers against an outside
reference. :func:`materialize` applies the same nodes to a plain directory, with
the OCI whiteout rules, giving the tree a driver's view must equal.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

BASE_MTIME = 1_795_429_638_123_456_789
"""2026-11-23, with a nanosecond part, so that second-only mtimes are caught."""

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"

# security.capability v2: cap_net_bind_service in permitted and effective.
CAP_NET_BIND_SERVICE = bytes.fromhex("01000002" + "00040000" + "00000000" + "00000000" + "00000000")


@dataclass(frozen=True)
class Node:
    """One entry of a layer. ``path`` is relative (``etc/motd``); ``target`` is a symlink's
    target or a hardlink's source path."""

    path: str
    kind: str
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = BASE_MTIME
    target: str = ""
    rdev: tuple[int, int] = (0, 0)
    xattrs: Mapping[str, bytes] = field(default_factory=dict)


def file(
    path: str,
    data: bytes = b"",
    mode: int = 0o644,
    *,
    uid: int = 0,
    gid: int = 0,
    mtime: int = BASE_MTIME,
    xattrs: Mapping[str, bytes] | None = None,
) -> Node:
    return Node(path, "file", data=data, mode=mode, uid=uid, gid=gid, mtime=mtime, xattrs=dict(xattrs or {}))


def directory(path: str, mode: int = 0o755, *, uid: int = 0, gid: int = 0, mtime: int = BASE_MTIME) -> Node:
    return Node(path, "dir", mode=mode, uid=uid, gid=gid, mtime=mtime)


def symlink(path: str, target: str, *, mtime: int = BASE_MTIME) -> Node:
    return Node(path, "symlink", mode=0o777, target=target, mtime=mtime)


def hardlink(path: str, source: str) -> Node:
    return Node(path, "hardlink", target=source)


def fifo(path: str, mode: int = 0o644) -> Node:
    return Node(path, "fifo", mode=mode)


def device(path: str, kind: str, major: int, minor: int, mode: int = 0o666) -> Node:
    return Node(path, kind, mode=mode, rdev=(major, minor))


def whiteout(path: str) -> Node:
    """The tar entry that deletes ``path`` (and its subtree) from the lower layers."""
    parent, _, name = path.rpartition("/")
    return Node(f"{parent}/{WHITEOUT_PREFIX}{name}" if parent else f"{WHITEOUT_PREFIX}{name}", "file", mode=0o600)


def opaque(directory_path: str) -> Node:
    """The tar entry that hides everything the lower layers hold in ``directory_path``."""
    return Node(f"{directory_path}/{OPAQUE_MARKER}", "file", mode=0o755, mtime=0)


def base_layer() -> list[Node]:
    """A small root filesystem like the fixture image's base: modes, owners, links, special bits."""
    t = BASE_MTIME
    return [
        directory("bin", mtime=t + 1),
        file("bin/busybox", b"\x7fELF busybox stand-in\n" * 64, 0o755, mtime=t + 2),
        hardlink("bin/busybox-hardlink", "bin/busybox"),
        symlink("bin/sh", "busybox", mtime=t + 3),
        directory("data", mtime=t + 4),
        file("data/a.txt", b"hello\n", mtime=t + 5),
        directory("data/dir", mtime=t + 6),
        file("data/dir/b.txt", b"bee\n", mtime=t + 7),
        file("data/owned", b"owned\n", uid=1000, gid=1000, mtime=t + 8),
        file("data/setgid", b"sgid\n", 0o2755, gid=50, mtime=t + 9),
        file("data/setuid", b"suid\n", 0o4755, mtime=t + 10),
        directory("etc", mtime=t + 11),
        file("etc/group", b"root:x:0:\nuser:x:1000:\n", mtime=t + 12),
        file("etc/motd", b"Welcome to the drivebay conformance base\n", mtime=t + 13),
        file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n", mtime=t + 14),
        directory("home", mtime=t + 15),
        directory("home/user", 0o750, uid=1000, gid=1000, mtime=t + 16),
        directory("opt", mtime=t + 17),
        directory("root", 0o700, mtime=t + 18),
        directory("tmp", 0o1777, mtime=t + 19),
        directory("usr", mtime=t + 20),
        directory("usr/share", mtime=t + 21),
        directory("usr/share/doc", mtime=t + 22),
        directory("usr/share/doc/busybox", mtime=t + 23),
        file("usr/share/doc/busybox/README", b"busybox stand-in\n", mtime=t + 24),
        directory("usr/share/doc/busybox/examples", 0o2775, mtime=t + 25),
        file("usr/share/doc/busybox/examples/hello.sh", b"#!/bin/sh\necho hello\n", 0o755, mtime=t + 26),
    ]


def _tarinfo(node: Node) -> tarfile.TarInfo:
    info = tarfile.TarInfo(node.path + ("/" if node.kind == "dir" else ""))
    info.mode = node.mode
    info.uid, info.gid = node.uid, node.gid
    info.mtime = node.mtime // 1_000_000_000
    headers = {f"SCHILY.xattr.{name}": value.decode("utf-8", "surrogateescape") for name, value in node.xattrs.items()}
    if node.mtime % 1_000_000_000:
        # tarfile keeps a PAX value it is given; a float would lose the nanoseconds.
        seconds, nanos = divmod(node.mtime, 1_000_000_000)
        headers["mtime"] = f"{seconds}.{nanos:09d}"
    info.pax_headers = headers
    info.type = {
        "file": tarfile.REGTYPE,
        "dir": tarfile.DIRTYPE,
        "symlink": tarfile.SYMTYPE,
        "hardlink": tarfile.LNKTYPE,
        "fifo": tarfile.FIFOTYPE,
        "char": tarfile.CHRTYPE,
        "block": tarfile.BLKTYPE,
    }[node.kind]
    if node.kind in ("symlink", "hardlink"):
        info.linkname = node.target
    if node.kind in ("char", "block"):
        info.devmajor, info.devminor = node.rdev
    info.size = len(node.data) if node.kind == "file" else 0
    return info


def layer_tar(nodes: Iterable[Node]) -> bytes:
    """The nodes as an uncompressed PAX layer tar, in the order given."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
        for node in nodes:
            info = _tarinfo(node)
            tar.addfile(info, io.BytesIO(node.data) if node.kind == "file" else None)
    return out.getvalue()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def _create(root: Path, node: Node) -> None:
    path = root / node.path
    if node.kind != "dir" or not path.is_dir() or path.is_symlink():
        _remove(path)
    if node.kind == "file":
        path.write_bytes(node.data)
    elif node.kind == "dir":
        path.mkdir(exist_ok=True)
    elif node.kind == "symlink":
        os.symlink(node.target, path)
    elif node.kind == "hardlink":
        os.link(root / node.target, path)
        return
    elif node.kind == "fifo":
        os.mkfifo(path)
    elif node.kind in ("char", "block"):
        kind_bits = 0o020000 if node.kind == "char" else 0o060000
        os.mknod(path, kind_bits | node.mode, os.makedev(*node.rdev))
    os.lchown(path, node.uid, node.gid)
    if node.kind != "symlink":
        # After chown, which clears setuid and setgid bits.
        os.chmod(path, node.mode)
    for name, value in node.xattrs.items():
        os.setxattr(path, name, value, follow_symlinks=False)


def materialize(nodes: Iterable[Node], root: Path) -> None:
    """Apply ``nodes`` to the directory ``root`` as a layer tar would be applied: whiteouts delete,
    an opaque marker empties its directory of what was there before, mtimes are set last."""
    stamped: list[Node] = []
    for node in nodes:
        parent, _, name = node.path.rpartition("/")
        if name == OPAQUE_MARKER:
            for child in (root / parent).iterdir():
                _remove(child)
        elif name.startswith(WHITEOUT_PREFIX):
            _remove(root / parent / name.removeprefix(WHITEOUT_PREFIX))
        else:
            _create(root, node)
            if node.kind != "hardlink":
                stamped.append(node)
    for node in reversed(stamped):
        os.utime(root / node.path, ns=(node.mtime, node.mtime), follow_symlinks=False)
