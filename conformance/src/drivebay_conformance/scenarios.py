"""What the cases do in a container's view: edits a user makes, and kinds of file a user creates.

Shared by several suite modules; each item says what every driver must then report.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from drivebay.hookspecs.graph import GraphCapabilities
from drivebay_conformance.trees import BASE_MTIME, CAP_NET_BIND_SERVICE

UNTOUCHED = ("/bin/busybox", "/bin/sh", "/data/setuid", "/etc/group", "/home/user")
"""Paths no edit touches: no driver may report them as changed."""


@dataclass(frozen=True)
class Edit:
    """Something a user does in a container layer, and what every driver must then report."""

    name: str
    edit: Callable[[Path], object]
    shows: Callable[[Path], bool]
    expect: tuple[str, ...]
    """``docker diff`` lines that ``changes`` must hold."""
    absent: tuple[str, ...] = ()
    """Lines ``changes`` must not hold (a deleted tree is one ``D``, not one per file)."""
    whiteouts: tuple[tuple[str, ...], ...] = ()
    """The diff tar holds at least one name of each group."""
    deleted: tuple[str, ...] = ()
    """Trees the diff tar must hold no entry below."""
    capability: str | None = None


def _rewrite_same_content(view: Path) -> None:
    path = view / "etc" / "passwd"
    data = path.read_bytes()
    path.write_bytes(data)
    later = BASE_MTIME + 14 + 1_000_000_000
    os.utime(path, ns=(later, later))


def _recreate_dir(view: Path) -> None:
    shutil.rmtree(view / "data" / "dir")
    (view / "data" / "dir").mkdir()
    (view / "data" / "dir" / "c.txt").write_bytes(b"new\n")


def _file_to_dir(view: Path) -> None:
    (view / "data" / "a.txt").unlink()
    (view / "data" / "a.txt").mkdir()
    (view / "data" / "a.txt" / "inner").write_bytes(b"inner\n")


def _dir_to_file(view: Path) -> None:
    shutil.rmtree(view / "data" / "dir")
    (view / "data" / "dir").write_bytes(b"now a file\n")


def _file_to_symlink(view: Path) -> None:
    (view / "etc" / "motd").unlink()
    os.symlink("/etc/passwd", view / "etc" / "motd")


EDITS = [
    Edit(
        "delete-file",
        lambda v: (v / "etc" / "motd").unlink(),
        lambda v: not os.path.lexists(v / "etc" / "motd"),
        expect=("C /etc", "D /etc/motd"),
        whiteouts=(("etc/.wh.motd",),),
    ),
    Edit(
        "delete-tree",
        lambda v: shutil.rmtree(v / "usr" / "share" / "doc"),
        lambda v: not os.path.lexists(v / "usr" / "share" / "doc"),
        expect=("C /usr/share", "D /usr/share/doc"),
        absent=("D /usr/share/doc/busybox", "D /usr/share/doc/busybox/README"),
        whiteouts=(("usr/share/.wh.doc",),),
        deleted=("usr/share/doc",),
    ),
    Edit(
        "delete-and-recreate-dir",
        _recreate_dir,
        lambda v: sorted(os.listdir(v / "data" / "dir")) == ["c.txt"],
        expect=("C /data/dir", "A /data/dir/c.txt", "D /data/dir/b.txt"),
        whiteouts=(("data/dir/.wh..wh..opq", "data/dir/.wh.b.txt"),),
    ),
    Edit(
        "file-to-dir",
        _file_to_dir,
        lambda v: (v / "data" / "a.txt" / "inner").read_bytes() == b"inner\n",
        expect=("C /data/a.txt", "A /data/a.txt/inner"),
    ),
    Edit(
        "dir-to-file",
        _dir_to_file,
        lambda v: (v / "data" / "dir").read_bytes() == b"now a file\n",
        expect=("C /data/dir",),
        deleted=("data/dir",),
    ),
    Edit(
        "file-to-symlink",
        _file_to_symlink,
        lambda v: os.readlink(v / "etc" / "motd") == "/etc/passwd",
        expect=("C /etc/motd",),
    ),
    Edit(
        "rename-lower-file",
        lambda v: os.rename(v / "data" / "a.txt", v / "data" / "renamed.txt"),
        lambda v: (v / "data" / "renamed.txt").read_bytes() == b"hello\n" and not (v / "data" / "a.txt").exists(),
        expect=("C /data", "D /data/a.txt", "A /data/renamed.txt"),
        whiteouts=(("data/.wh.a.txt",),),
    ),
    Edit(
        "move-lower-dir",
        # shutil.move copies and deletes where rename(2) gives EXDEV (overlay without redirect_dir), as mv does.
        lambda v: shutil.move(v / "usr" / "share" / "doc" / "busybox", v / "opt" / "busybox-doc"),
        lambda v: (
            (v / "opt" / "busybox-doc" / "README").is_file() and not (v / "usr" / "share" / "doc" / "busybox").exists()
        ),
        expect=(
            "D /usr/share/doc/busybox",
            "A /opt/busybox-doc",
            "A /opt/busybox-doc/README",
            "A /opt/busybox-doc/examples/hello.sh",
        ),
        whiteouts=(("usr/share/doc/.wh.busybox",),),
        deleted=("usr/share/doc/busybox",),
    ),
    Edit(
        "chmod",
        lambda v: os.chmod(v / "etc" / "motd", 0o600),
        lambda v: (os.stat(v / "etc" / "motd").st_mode & 0o7777) == 0o600,
        expect=("C /etc/motd",),
    ),
    Edit(
        "chown",
        lambda v: os.lchown(v / "data" / "a.txt", 1000, 1000),
        lambda v: os.stat(v / "data" / "a.txt").st_uid == 1000,
        expect=("C /data/a.txt",),
    ),
    Edit(
        "set-xattr",
        lambda v: os.setxattr(v / "data" / "a.txt", "user.drivebay.note", b"tagged"),
        lambda v: os.getxattr(v / "data" / "a.txt", "user.drivebay.note") == b"tagged",
        expect=("C /data/a.txt",),
        capability="xattrs",
    ),
    Edit(
        "touch-mtime-by-one-nanosecond",
        lambda v: os.utime(v / "data" / "a.txt", ns=(BASE_MTIME, BASE_MTIME + 6)),
        lambda v: os.stat(v / "data" / "a.txt").st_mtime_ns == BASE_MTIME + 6,
        expect=("C /data/a.txt",),
    ),
    Edit(
        "same-content-new-mtime",
        _rewrite_same_content,
        lambda v: os.stat(v / "etc" / "passwd").st_mtime_ns == BASE_MTIME + 14 + 1_000_000_000,
        expect=("C /etc/passwd",),
    ),
]


LONG_NAME = "n" * 251 + ".txt"
DEEP_PARTS = [f"level-{i:02d}-" + "d" * 41 for i in range(40)]
"""40 directories of 50 bytes: a 2 KB path, beyond ustar's 255 bytes and deep enough to catch recursion limits."""
GIB = 1 << 30


@dataclass(frozen=True)
class Kind:
    """A kind of file, made in a container's view by ``make``; ``path`` is where it lives."""

    name: str
    path: str
    make: Callable[[Path], object]
    capability: str | None = None


def _hardlinks_in_layer(view: Path) -> None:
    (view / "data" / "linked.txt").write_bytes(b"linked\n")
    os.link(view / "data" / "linked.txt", view / "data" / "linked-again.txt")
    (view / "data" / "sub").mkdir()
    os.link(view / "data" / "linked.txt", view / "data" / "sub" / "linked-third.txt")


def _xattrs(view: Path) -> None:
    (view / "data" / "xattrs").write_bytes(b"x\n")
    os.setxattr(view / "data" / "xattrs", "user.drivebay.text", b"value")
    os.setxattr(view / "data" / "xattrs", "user.drivebay.binary", b"\x00\x01\xfe\xff")
    os.setxattr(view / "data", "user.drivebay.on-a-dir", b"dir")


def _capability(view: Path) -> None:
    (view / "data" / "ping").write_bytes(b"\x7fELF ping stand-in\n")
    os.chmod(view / "data" / "ping", 0o755)
    os.setxattr(view / "data" / "ping", "security.capability", CAP_NET_BIND_SERVICE)


def _sparse(view: Path) -> None:
    with open(view / "data" / "sparse", "wb") as f:
        f.write(b"start")
        f.seek(32 << 20)
        f.write(b"middle")
        f.truncate(64 << 20)


def _deep(view: Path) -> None:
    deep = view.joinpath("data", *DEEP_PARTS)
    deep.mkdir(parents=True)
    (deep / "bottom.txt").write_bytes(b"bottom\n")


def _empty(view: Path) -> None:
    (view / "data" / "empty").write_bytes(b"")
    (view / "data" / "empty-dir").mkdir()


def _big(view: Path) -> None:
    block = os.urandom(1 << 20)
    with open(view / "data" / "big", "wb") as f:
        for _ in range(GIB // len(block)):
            f.write(block)
        f.write(b"!")


KINDS = [
    Kind("hardlinks-in-one-layer", "/data/linked-again.txt", _hardlinks_in_layer, "hardlinks"),
    Kind(
        "hardlink-to-a-lower-file",
        "/data/a-hardlink.txt",
        lambda v: os.link(v / "data" / "a.txt", v / "data" / "a-hardlink.txt"),
        "hardlinks",
    ),
    Kind("dangling-symlink", "/data/dangling", lambda v: os.symlink("no/such/target", v / "data" / "dangling")),
    Kind("absolute-symlink", "/data/absolute", lambda v: os.symlink("/etc/passwd", v / "data" / "absolute")),
    Kind("relative-symlink", "/data/relative", lambda v: os.symlink("../etc/passwd", v / "data" / "relative")),
    Kind("fifo", "/data/fifo", lambda v: os.mkfifo(v / "data" / "fifo")),
    Kind(
        "char-device",
        "/data/null",
        lambda v: os.mknod(v / "data" / "null", 0o020666, os.makedev(1, 3)),
        "device_nodes",
    ),
    Kind(
        "block-device",
        "/data/loop",
        lambda v: os.mknod(v / "data" / "loop", 0o060660, os.makedev(7, 200)),
        "device_nodes",
    ),
    Kind("xattrs", "/data/xattrs", _xattrs, "xattrs"),
    Kind("security-capability", "/data/ping", _capability, "xattrs"),
    Kind("sparse-file", "/data/sparse", _sparse),
    Kind(
        "255-byte-name",
        f"/data/{LONG_NAME}",
        lambda v: (v / "data" / LONG_NAME).write_bytes(b"long\n"),
        "long_names",
    ),
    Kind("deep-path", "/data/" + "/".join(DEEP_PARTS) + "/bottom.txt", _deep),
    Kind("empty-file-and-dir", "/data/empty", _empty),
]
BIG = Kind("file-over-1-gib", "/data/big", _big)


def busy_container(view: Path, supports: Callable[[str], bool]) -> None:
    """Everything at once in one container: every file kind but the 1 GiB one, then the edits that touch
    different paths. ``supports(capability)`` says which optional kinds to make."""
    for kind in KINDS:
        if kind.capability is None or supports(kind.capability):
            kind.make(view)
    edits = {edit.name: edit for edit in EDITS}
    for name in BUSY_EDITS:
        edits[name].edit(view)


BUSY_EDITS = ("chown", "rename-lower-file", "delete-tree", "delete-and-recreate-dir", "chmod", "same-content-new-mtime")
"""Edits that touch different paths, in order: ``chown`` re-owns data/a.txt before it is renamed."""


def supported_by(*capabilities: GraphCapabilities) -> Callable[[str], bool]:
    return lambda name: all(getattr(c, name) for c in capabilities)
