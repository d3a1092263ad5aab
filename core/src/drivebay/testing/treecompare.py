"""Compare two directory trees entry by entry, and say where they first differ.

A driver author's most used test helper: apply a layer, take the merged view,
and check it against the tree it should be. :func:`snapshot_tree` records every
entry below a root (type, content hash, mode, owner, xattrs, nanosecond mtime,
symlink target, device numbers, hardlink groups); :func:`compare_trees` lists
the differences in tree order; :func:`assert_same_tree` raises an
``AssertionError`` that names the first differing path and field, then lists
the rest.

Hardlinks are compared as groups (which paths share an inode), never by inode
number, so two copies of a tree compare equal. Xattrs that overlay,
fuse-overlayfs and SELinux keep for themselves are ignored: they are the
driver's bookkeeping, not the layer's content.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import os
import stat
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

FIELDS = ("type", "size", "content", "mode", "uid", "gid", "mtime", "target", "rdev", "xattrs", "hardlinks")
"""Every field a snapshot records, in the order differences are reported."""

PRIVATE_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.", "user.fuseoverlayfs.", "security.selinux")
"""Xattrs that belong to a filesystem or driver, not to the files of a layer."""

_HASH_CHUNK = 1 << 20
_TYPES = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "symlink",
    stat.S_IFIFO: "fifo",
    stat.S_IFCHR: "char device",
    stat.S_IFBLK: "block device",
    stat.S_IFSOCK: "socket",
}


@dataclass(frozen=True)
class Entry:
    """What a tree holds at one path. ``path`` is absolute inside the tree (``/`` is the root)."""

    path: str
    type: str
    mode: int
    uid: int
    gid: int
    mtime: int
    size: int | None = None
    content: str | None = None
    target: str | None = None
    rdev: tuple[int, int] | None = None
    xattrs: tuple[tuple[str, bytes], ...] = ()
    hardlinks: tuple[str, ...] = ()
    """The other paths of this tree that share this entry's inode."""


@dataclass
class TreeSnapshot:
    """Every entry of the tree at ``root``, keyed by path."""

    root: Path
    entries: dict[str, Entry] = field(default_factory=dict)

    def __getitem__(self, path: str) -> Entry:
        return self.entries[path]

    def __contains__(self, path: object) -> bool:
        return path in self.entries

    def paths(self) -> list[str]:
        return sorted(self.entries, key=_tree_order)


@dataclass(frozen=True)
class Difference:
    """One field of one path that differs; ``left``/``right`` are ``None`` where a side lacks the path."""

    path: str
    field: str
    left: object
    right: object

    def __str__(self) -> str:
        if self.field == "presence":
            return f"{self.path}: {self.left} on the left, {self.right} on the right"
        return f"{self.path}: {self.field} {_show(self.field, self.left)} != {_show(self.field, self.right)}"


def _tree_order(path: str) -> tuple[bytes, ...]:
    # Parents come before their children; siblings in byte order, as in a sorted layer tar.
    return tuple(os.fsencode(part) for part in path.split("/") if part)


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _xattrs(path: Path) -> tuple[tuple[str, bytes], ...]:
    names = sorted(os.listxattr(path, follow_symlinks=False))
    return tuple(
        (name, os.getxattr(path, name, follow_symlinks=False))
        for name in names
        if not name.startswith(PRIVATE_XATTR_PREFIXES)
    )


def _entry(path: str, full: Path, st: os.stat_result, hash_content: bool) -> Entry:
    kind = _TYPES.get(stat.S_IFMT(st.st_mode), f"unknown type {stat.S_IFMT(st.st_mode):o}")
    is_file = kind == "file"
    return Entry(
        path=path,
        type=kind,
        mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
        mtime=st.st_mtime_ns,
        size=st.st_size if is_file else None,
        content=_hash_file(full) if is_file and hash_content else None,
        target=os.readlink(full) if kind == "symlink" else None,
        rdev=(os.major(st.st_rdev), os.minor(st.st_rdev)) if kind in ("char device", "block device") else None,
        xattrs=_xattrs(full),
    )


def snapshot_tree(root: Path, *, hash_content: bool = True) -> TreeSnapshot:
    """Record every entry at and below ``root`` (symlinks are not followed).

    ``hash_content=False`` skips reading file contents, for trees too big to
    hash; then only sizes are compared.
    """
    root = Path(root)
    snapshot = TreeSnapshot(root=root)
    inodes: dict[tuple[int, int], list[str]] = {}
    pending = [("/", root)]
    while pending:
        path, full = pending.pop()
        st = os.lstat(full)
        snapshot.entries[path] = _entry(path, full, st, hash_content)
        if stat.S_ISDIR(st.st_mode):
            with os.scandir(full) as it:
                names = [e.name for e in it]
            prefix = path.rstrip("/")
            pending.extend((f"{prefix}/{name}", full / name) for name in names)
        else:
            inodes.setdefault((st.st_dev, st.st_ino), []).append(path)
    for group in inodes.values():
        if len(group) > 1:
            for path in group:
                others = tuple(sorted((p for p in group if p != path), key=_tree_order))
                snapshot.entries[path] = dataclasses.replace(snapshot.entries[path], hardlinks=others)
    return snapshot


def _ignored(path: str, patterns: Collection[str]) -> bool:
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in patterns)


def _entry_differences(
    a: Entry, b: Entry, fields: Collection[str], dir_mtimes: bool, ignore: Collection[str]
) -> list[Difference]:
    found: list[Difference] = []
    for name in FIELDS:
        if name not in fields:
            continue
        if name == "type" and a.type != b.type:
            # Nothing else is comparable between a file and a directory.
            return [Difference(a.path, "type", a.type, b.type)]
        if name == "mtime" and a.type == "dir" and not dir_mtimes:
            continue
        if name == "xattrs":
            found.extend(_xattr_differences(a, b))
            continue
        left, right = getattr(a, name), getattr(b, name)
        if name == "hardlinks":
            left = tuple(p for p in left if not _ignored(p, ignore))
            right = tuple(p for p in right if not _ignored(p, ignore))
        if left != right:
            found.append(Difference(a.path, name, left, right))
    return found


def _xattr_differences(a: Entry, b: Entry) -> list[Difference]:
    left, right = dict(a.xattrs), dict(b.xattrs)
    return [
        Difference(a.path, f"xattr {name}", left.get(name), right.get(name))
        for name in sorted(left.keys() | right.keys())
        if left.get(name) != right.get(name)
    ]


def _as_snapshot(tree: Path | TreeSnapshot) -> TreeSnapshot:
    return tree if isinstance(tree, TreeSnapshot) else snapshot_tree(Path(tree))


def compare_trees(
    a: Path | TreeSnapshot,
    b: Path | TreeSnapshot,
    *,
    ignore: Iterable[str] = (),
    fields: Iterable[str] = FIELDS,
    dir_mtimes: bool = True,
) -> list[Difference]:
    """List how tree ``b`` differs from tree ``a``, in tree order (parents first).

    ``ignore`` holds ``fnmatch`` patterns of paths to leave out (``/`` is the
    root itself, ``/lost+found*`` a subtree). ``fields`` narrows what is
    compared (see :data:`FIELDS`); ``dir_mtimes=False`` skips directory
    mtimes only. A path missing on one side is one difference with the field
    ``presence``, and its children are not listed again.
    """
    patterns = tuple(ignore)
    wanted = frozenset(fields)
    unknown = wanted - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown tree fields {sorted(unknown)}; choose from {', '.join(FIELDS)}")
    left, right = _as_snapshot(a), _as_snapshot(b)
    found: list[Difference] = []
    missing_dirs: list[str] = []
    for path in sorted(left.entries.keys() | right.entries.keys(), key=_tree_order):
        if _ignored(path, patterns) or any(path.startswith(d + "/") for d in missing_dirs):
            continue
        ea, eb = left.entries.get(path), right.entries.get(path)
        if ea is None or eb is None:
            present = ea or eb
            assert present is not None
            found.append(Difference(path, "presence", ea.type if ea else "missing", eb.type if eb else "missing"))
            if present.type == "dir":
                missing_dirs.append(path)
            continue
        found.extend(_entry_differences(ea, eb, wanted, dir_mtimes, patterns))
    return found


def _show(field_name: str, value: object) -> str:
    if value is None:
        return "(none)"
    if field_name == "mode" and isinstance(value, int):
        return f"{value:04o}"
    if field_name == "mtime" and isinstance(value, int):
        stamp = datetime.fromtimestamp(value // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{value} ({stamp}.{value % 1_000_000_000:09d}Z)"
    if field_name == "content" and isinstance(value, str):
        return f"sha256:{value[:16]}"
    if field_name == "hardlinks" and isinstance(value, tuple):
        return "[" + ", ".join(value) + "]" if value else "[no other links]"
    if field_name == "rdev" and isinstance(value, tuple):
        return f"{value[0]}:{value[1]}"
    return repr(value)


def describe_differences(
    differences: list[Difference], left: str = "left", right: str = "right", limit: int = 20
) -> str:
    """A readable report: the first difference, then up to ``limit`` lines of the rest."""
    if not differences:
        return "the trees are the same"
    first = differences[0]
    lines = [
        f"first difference at {first.path}, field {first.field}: "
        f"{left} has {_show(first.field, first.left)}, {right} has {_show(first.field, first.right)}",
        f"{len(differences)} difference(s) in {len({d.path for d in differences})} path(s):",
    ]
    lines.extend(f"  {d}" for d in differences[:limit])
    if len(differences) > limit:
        lines.append(f"  ... and {len(differences) - limit} more")
    return "\n".join(lines)


def assert_same_tree(
    a: Path | TreeSnapshot,
    b: Path | TreeSnapshot,
    context: str = "",
    *,
    ignore: Iterable[str] = (),
    fields: Iterable[str] = FIELDS,
    dir_mtimes: bool = True,
    labels: tuple[str, str] = ("left", "right"),
) -> None:
    """Raise ``AssertionError`` naming the first differing path and field if the trees differ.

    ``context`` starts the message (say which driver and layers were compared);
    ``labels`` name the two trees in it (``("expected", "layer 'rw'")``). The
    other keyword arguments are those of :func:`compare_trees`.
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this one
    left, right = _as_snapshot(a), _as_snapshot(b)
    differences = compare_trees(left, right, ignore=ignore, fields=fields, dir_mtimes=dir_mtimes)
    if differences:
        header = f"{context}: " if context else ""
        raise AssertionError(
            f"{header}trees differ ({labels[0]} {left.root}, {labels[1]} {right.root})\n"
            + describe_differences(differences, *labels)
        )
