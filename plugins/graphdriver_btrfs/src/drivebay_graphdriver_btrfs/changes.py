"""Changes of a snapshot against its origin, found from btrfs generation numbers.

Every inode item btrfs writes records the transaction that wrote it
(``transid``), and every tree block records the transaction that last wrote
it. A snapshot made in transaction ``otransid`` shares all its blocks with its
origin until one is written, so a tree search with ``min_transid =
otransid + 1`` visits only the blocks written since: the cost follows the
change, not the image. From those blocks:

- inodes written since the snapshot (content, mode, owner, xattrs, times,
  link count) give candidate paths, all their hard links included (their
  names are in the same leaves); those only read (whose inode item differs
  from the origin's in its atime alone, as after listing a directory) are
  dropped before their paths are made;
- directories written since (an entry added, removed or renamed) add every
  name they hold now or held in the origin, which is how deletions show up;
  directories whose ctime, mtime and size are the origin's are not listed.

Each candidate is then compared with the origin by the rules of the naive
tree comparison (:func:`drivebay.archive.naive_changes`), so both agree: a
candidate that was only read (atime) or written back unchanged is no change.
A directory above a candidate is taken to be the same directory in both
trees, without an lstat, when no inode on the way to it was written.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

# The naive comparison's own notion of "same entry", so both methods agree by construction.
from drivebay.archive.changes import entry_changed
from drivebay.fs import btrfs
from drivebay.fs.noatime import scandir_noatime
from drivebay.hookspecs.graph import Change, ChangeKind


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}"


class _Comparison:
    """Compares candidate paths of a child tree with the parent tree."""

    def __init__(self, child_root: Path, parent_root: Path, written: set[str]) -> None:
        self.child_root = str(child_root)
        self.parent_root = str(parent_root)
        self.written = written
        self.changes: dict[str, ChangeKind] = {}
        self._both_dirs: dict[str, bool] = {"": True}
        # Each path is looked at up to three times (as a directory, for its entries, as a
        # candidate); one lstat per tree serves them all, halving the system calls.
        self._stats: dict[str, tuple[os.stat_result | None, os.stat_result | None]] = {}

    def stats(self, rel: str) -> tuple[os.stat_result | None, os.stat_result | None]:
        """``rel``'s lstat in the child and in the parent (``None``: absent)."""
        pair = self._stats.get(rel)
        if pair is None:
            pair = self._stats[rel] = (_lstat(self.child_root + rel), _lstat(self.parent_root + rel))
        return pair

    def dir_in_both(self, rel: str) -> bool:
        """Whether ``rel`` and each of its ancestors is a directory in both trees.

        ``rel`` is a written path, or a directory holding a path of the child.
        """
        known = self._both_dirs.get(rel)
        if known is None:
            head = rel.rpartition("/")[0]
            if rel not in self.written and self.unwritten_from_root(head):
                # Every inode on the way was left as it was, names and links included (renaming,
                # linking or unlinking writes the inode item), so the path leads to the same
                # directories in the parent: no lstat needed for the ancestors of a changed file.
                known = True
            else:
                new, old = self.stats(rel)
                known = (
                    new is not None
                    and old is not None
                    and stat.S_ISDIR(new.st_mode)
                    and stat.S_ISDIR(old.st_mode)
                    and self.dir_in_both(head)
                )
            self._both_dirs[rel] = known
        return known

    def unwritten_from_root(self, rel: str) -> bool:
        """Whether no directory on the way to ``rel`` (the root aside, itself included) was written."""
        while rel:
            if rel in self.written:
                return False
            rel = rel.rpartition("/")[0]
        return True

    def entries_unchanged(self, rel: str) -> bool:
        """Whether directory ``rel`` (in both trees) was only read since the snapshot, not written.

        Reading a directory updates its atime, which writes its inode item;
        adding, removing or renaming an entry changes its ctime (which nothing
        can set back) and its size, so listing it again would be wasted.
        """
        new, old = self.stats(rel)
        assert new is not None and old is not None, "called for directories in both trees only"
        return (new.st_ctime_ns, new.st_mtime_ns, new.st_size) == (old.st_ctime_ns, old.st_mtime_ns, old.st_size)

    def add_tree(self, rel: str) -> None:
        """Record ``rel`` and everything below it in the child as added."""
        self.changes[rel] = ChangeKind.ADD
        stack = [rel]
        while stack:
            current = stack.pop()
            with scandir_noatime(f"{self.child_root}{current}") as entries:
                for entry in entries:
                    path = _join(current, entry.name)
                    self.changes[path] = ChangeKind.ADD
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(path)

    def compare(self, rel: str) -> None:
        """Classify one candidate; paths under a replaced or new directory are covered by it."""
        if rel in self.changes or not self.dir_in_both(rel.rpartition("/")[0]):
            return
        new, old = self.stats(rel)
        if new is None:
            if old is not None:
                self.changes[rel] = ChangeKind.DELETE
            return
        if old is None:
            if stat.S_ISDIR(new.st_mode):
                self.add_tree(rel)
            else:
                self.changes[rel] = ChangeKind.ADD
            return
        if entry_changed(self.child_root + rel, new, self.parent_root + rel, old):
            self.changes[rel] = ChangeKind.MODIFY
            if stat.S_ISDIR(new.st_mode) and not stat.S_ISDIR(old.st_mode):
                for name in os.listdir(f"{self.child_root}{rel}"):
                    self._add_under(_join(rel, name))

    def _add_under(self, rel: str) -> None:
        st = os.lstat(f"{self.child_root}{rel}")
        if stat.S_ISDIR(st.st_mode):
            self.add_tree(rel)
        else:
            self.changes[rel] = ChangeKind.ADD

    def result(self) -> list[Change]:
        """The changes, with every directory that holds one marked modified, as the naive walk does."""
        for rel in list(self.changes):
            head = rel.rpartition("/")[0]
            while head and head not in self.changes:
                self.changes[head] = ChangeKind.MODIFY
                head = head.rpartition("/")[0]
        # Sorted as (path, kind) pairs, not as Changes: each path occurs once, and a tuple
        # comparison is one C call where a dataclass's __lt__ is a Python one.
        return [Change(rel, kind) for rel, kind in sorted(self.changes.items())]


def snapshot_changes(child: Path, parent: Path, since: int) -> list[Change]:
    """Changes of subvolume ``child`` against ``parent``, of which it was snapshotted in ``since``.

    ``parent`` must not have changed since the snapshot; the caller checks
    that with generation numbers. Pending writes must be committed first
    (:func:`drivebay.fs.btrfs.sync`), since btrfs delays inode updates.
    """
    paths = ["/" + path if path else "" for path in btrfs.paths_changed_since(child, since, origin=parent)]
    comparison = _Comparison(child, parent, set(paths))
    candidates: set[str] = set()
    for rel in paths:
        candidates.add(rel)
        if not comparison.dir_in_both(rel) or comparison.entries_unchanged(rel):
            continue
        names = set(os.listdir(f"{child}{rel}")) | set(os.listdir(f"{parent}{rel}"))
        candidates.update(_join(rel, name) for name in names)
    candidates.discard("")
    # Parents before children, so a new or replaced directory covers what is under it.
    for rel in sorted(candidates, key=lambda p: (p.count("/"), p)):
        comparison.compare(rel)
    return comparison.result()
