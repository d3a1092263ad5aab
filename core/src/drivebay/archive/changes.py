"""What changed in a layer: by comparing two trees, or by reading an upper directory's whiteouts."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from operator import attrgetter
from pathlib import Path

from drivebay.archive.entries import read_xattrs
from drivebay.archive.whiteouts import (
    DRIVER_XATTR_PREFIXES,
    OPAQUE_MARKER,
    WhiteoutFormat,
    is_aufs_meta,
    is_opaque_dir,
    whited_out_name,
)
from drivebay.fs.noatime import scandir_noatime
from drivebay.hookspecs.graph import Change, ChangeKind


def _same_stat(st: os.stat_result, old: os.stat_result) -> bool:
    """True if type, mode, owner, nanosecond mtime, size and device number agree: what one lstat tells.

    Nanosecond mtimes make sleeping between edits unnecessary. A directory's
    size is left out: it depends on the filesystem, not on the layer.
    """
    mode = st.st_mode
    if mode != old.st_mode or st.st_mtime_ns != old.st_mtime_ns or st.st_uid != old.st_uid or st.st_gid != old.st_gid:
        return False
    if stat.S_ISDIR(mode):
        return True
    if st.st_size != old.st_size:
        return False
    return st.st_rdev == old.st_rdev if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else True


def _gained_links(st: os.stat_result, old: os.stat_result) -> bool:
    """True for a file given a new hardlink in this layer.

    Such a file is changed so that both names go in the layer tar, linked,
    instead of the new name as a lone copy. A file that lost a link (its
    other name was deleted or replaced) is not changed, as in `docker diff`;
    a directory's link count only counts its subdirectories.
    """
    return st.st_nlink > old.st_nlink and not stat.S_ISDIR(st.st_mode)


def entry_changed(path: str, st: os.stat_result, old_path: str, old_st: os.stat_result) -> bool:
    """True if the entry at ``path`` differs from the one at ``old_path`` in the parent, as diffs count it.

    Compares inode type, mode, owner, nanosecond mtime, size, device number,
    symlink target, xattrs and whether a file gained hardlinks. The stat
    fields come first: most changed entries differ there, and the symlink
    target and xattrs cost syscalls on both sides. Drivers with a native diff
    use this so that their changes agree with :func:`naive_changes` by construction.
    """
    if _gained_links(st, old_st) or not _same_stat(st, old_st):
        return True
    if stat.S_ISLNK(st.st_mode) and os.readlink(path) != os.readlink(old_path):
        return True
    return read_xattrs(path, DRIVER_XATTR_PREFIXES) != read_xattrs(old_path, DRIVER_XATTR_PREFIXES)


# Change's own ordering as a key: one C call per change instead of a dataclass __lt__ per
# comparison. A path occurs once in a result (an upper dir never holds a name and its whiteout),
# so the kind never breaks a tie.
_order = attrgetter("path")


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _scan(path: str) -> dict[str, tuple[str, os.stat_result]]:
    with scandir_noatime(path) as it:
        return {entry.name: (f"{path}/{entry.name}", entry.stat(follow_symlinks=False)) for entry in it}


def _compare_dir(new_dir: str, old_dir: str | None, prefix: str, out: list[Change]) -> None:
    new_entries = _scan(new_dir)
    old_entries = _scan(old_dir) if old_dir is not None else {}
    for name, (path, st) in new_entries.items():
        rel = f"{prefix}/{name}"
        old = old_entries.get(name)
        if old is None:
            out.append(Change(rel, ChangeKind.ADD))
            if stat.S_ISDIR(st.st_mode):
                _compare_dir(path, None, rel, out)
            continue
        if stat.S_ISDIR(st.st_mode):
            before = len(out)
            _compare_dir(path, old[0] if stat.S_ISDIR(old[1].st_mode) else None, rel, out)
            # As moby does: a directory holding changes is itself changed, so a
            # layer tar carries it and restores its metadata. Its own metadata
            # then need not be compared.
            changed = len(out) > before or entry_changed(path, st, *old)
        else:
            changed = entry_changed(path, st, *old)
        if changed:
            out.append(Change(rel, ChangeKind.MODIFY))
    # A deleted tree is one change, as in `docker diff`.
    out.extend(Change(f"{prefix}/{name}", ChangeKind.DELETE) for name in old_entries.keys() - new_entries.keys())


def naive_changes(layer_root: Path, parent_root: Path | None) -> list[Change]:
    """The changes of the tree ``layer_root`` against ``parent_root`` (``None``: everything is added), sorted.

    Compares inode type, mode, owner, nanosecond mtime, size, symlink target,
    device number, xattrs and whether a file gained hardlinks. A directory is modified when its own metadata
    differs or it holds changes (as in moby); a deleted tree gives one ``D``
    for its top.
    """
    out: list[Change] = []
    _compare_dir(os.fspath(layer_root), os.fspath(parent_root) if parent_root is not None else None, "", out)
    out.sort(key=_order)
    return out


def _upper_dir(upper_dir: str, parent_dir: str | None, prefix: str, fmt: WhiteoutFormat, out: list[Change]) -> bool:
    """Add the changes below ``upper_dir`` to ``out``; return whether ``upper_dir`` is opaque."""
    shadowed: set[str] = set()
    with scandir_noatime(upper_dir) as it:
        # Stat while the directory's fd is open: the entries stat relative to it.
        entries = [(entry.name, entry.stat(follow_symlinks=False)) for entry in it]
    # aufs marks opacity with a name, already listed here; overlay with an xattr of the directory.
    opaque = is_opaque_dir(upper_dir, {name for name, _ in entries} if fmt is WhiteoutFormat.AUFS else None, fmt)
    for name, st in entries:
        path = f"{upper_dir}/{name}"
        if fmt is WhiteoutFormat.AUFS and (name == OPAQUE_MARKER or is_aufs_meta(name)):
            continue
        victim = whited_out_name(name, st, fmt)
        if victim is not None:
            # A whiteout of something no lower layer has is overlay bookkeeping, not a deletion.
            if parent_dir is not None and victim not in shadowed and _lstat(f"{parent_dir}/{victim}"):
                out.append(Change(f"{prefix}/{victim}", ChangeKind.DELETE))
            shadowed.add(victim)
            continue
        shadowed.add(name)
        rel = f"{prefix}/{name}"
        old_path = f"{parent_dir}/{name}" if parent_dir is not None else None
        old_st = _lstat(old_path) if old_path is not None else None
        is_dir = stat.S_ISDIR(st.st_mode)
        if old_st is None or old_path is None:
            out.append(Change(rel, ChangeKind.ADD))
            if is_dir:
                _upper_dir(path, None, rel, fmt, out)
            continue
        if is_dir:
            before = len(out)
            lower = old_path if stat.S_ISDIR(old_st.st_mode) else None
            child_opaque = _upper_dir(path, lower, rel, fmt, out)
            # Checked last: most directories in an upper dir are there because they hold changes.
            changed = child_opaque or len(out) > before or entry_changed(path, st, old_path, old_st)
        else:
            changed = entry_changed(path, st, old_path, old_st)
        if changed:
            out.append(Change(rel, ChangeKind.MODIFY))
    # The top of the layer (prefix "") hides nothing: only directories below it can be opaque.
    if opaque and prefix and parent_dir is not None:
        out.extend(Change(f"{prefix}/{name}", ChangeKind.DELETE) for name in set(os.listdir(parent_dir)) - shadowed)
    return opaque


def tree_changes(upper: Path, parent_root: Path | None, whiteouts: WhiteoutFormat) -> list[Change]:
    """The changes recorded in ``upper``, a layer's own directory holding on-disk whiteouts, sorted.

    Only ``upper`` is walked; ``parent_root`` (the parent's merged view, or
    ``None``) is looked up for the paths found there. A whiteout gives ``D``
    when the parent has the path; an opaque directory gives ``C`` (``A`` when
    new) and a ``D`` for each parent child it hides. Other entries are ``A``
    when the parent lacks them, ``C`` when their metadata differs or, for a
    directory, when it holds changes. The result
    equals :func:`naive_changes` of the merged view against ``parent_root``.
    """
    out: list[Change] = []
    top = os.fspath(upper)
    _upper_dir(top, os.fspath(parent_root) if parent_root is not None else None, "", whiteouts, out)
    out.sort(key=_order)
    return out


def changes_size(root: Path, changes: Iterable[Change]) -> int:
    """Bytes of the regular files added or modified by ``changes`` in ``root``; each hardlinked inode counts once."""
    size = 0
    seen: set[int] = set()
    top = os.fspath(root)
    for change in changes:
        if change.kind is ChangeKind.DELETE:
            continue
        st = _lstat(os.path.join(top, change.path.lstrip("/")))
        if st is None or not stat.S_ISREG(st.st_mode):
            continue
        if st.st_nlink > 1:
            if st.st_ino in seen:
                continue
            seen.add(st.st_ino)
        size += st.st_size
    return size
