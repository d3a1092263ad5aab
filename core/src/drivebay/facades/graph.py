"""The typed facade over a graph driver: what every caller uses instead of ``pm.hook``.

Core keeps, once for every driver:
- the layer registry (parent, read-only or read-write, state), so that
  children block removal and depth is checked before a mount is tried;
- mount refcounts in ``drivebay.db``, shared by every drivebay process;
- crash safety: a layer is registered as ``creating`` with the owning PID
  before the driver touches disk and becomes ``ready`` only when complete;
  rows left by a dead process are removed with their driver data at the next
  start;
- the naive diff, changes, apply and size for drivers without native ones.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from drivebay import archive
from drivebay.errors import (
    DepthLimitExceeded,
    LayerExists,
    LayerHasChildren,
    LayerInUse,
    LayerNotFound,
)
from drivebay.hookspecs.graph import Change, GraphCapabilities, Mount
from drivebay.loader import LoadedDriver
from drivebay.processes import pid_alive
from drivebay.state import StateDB

SCHEMA = """
CREATE TABLE IF NOT EXISTS graph_layers (
    driver TEXT NOT NULL,
    id TEXT NOT NULL,
    parent TEXT,
    rw INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('creating', 'ready', 'removing')),
    pid INTEGER NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (driver, id)
);
CREATE TABLE IF NOT EXISTS graph_mount_refs (
    driver TEXT NOT NULL,
    id TEXT NOT NULL,
    count INTEGER NOT NULL CHECK (count > 0),
    PRIMARY KEY (driver, id)
) WITHOUT ROWID
"""

_TAKE_REF = (
    "INSERT INTO graph_mount_refs VALUES (?, ?, 1) ON CONFLICT (driver, id) DO UPDATE SET count = count + 1"
)
_TAKE_READY_REF = (
    "INSERT INTO graph_mount_refs SELECT driver, id, 1 FROM graph_layers WHERE driver=? AND id=? AND state='ready' "
    "ON CONFLICT (driver, id) DO UPDATE SET count = count + 1"
)


@dataclass(frozen=True)
class LayerRecord:
    """What core's registry knows of one ready layer; ``mounts`` is its refcount."""

    id: str
    parent: str | None
    rw: bool
    created: float
    mounts: int


@dataclass(frozen=True)
class MountPlan:
    """What :meth:`GraphDriver.mounts` answers: the mounts to make, and whether a reference was taken for them.

    ``holds_reference`` is true when the mounts are a bind of the driver's own
    mounted view (a driver without ``graph_mounts``): the caller keeps that
    view alive until it calls :meth:`GraphDriver.put` once.
    """

    mounts: tuple[Mount, ...]
    holds_reference: bool


OWN_PARENT = "<own parent>"
"""Sentinel for diff-like calls: compare against the layer's own parent."""


class GraphDriver:
    """A loaded, initialised graph driver with core's registry, refcounts and fallbacks."""

    def __init__(self, loaded: LoadedDriver, home: Path, state: StateDB, options: Mapping[str, str]) -> None:
        self.loaded = loaded
        self.name = loaded.name
        self.home = home
        self.state = state
        self._hook = loaded.hook
        self.capabilities: GraphCapabilities = self._hook.graph_capabilities()
        home.mkdir(parents=True, exist_ok=True)
        state.ensure_schema(SCHEMA)
        self._refs_without_rowid()
        self._hook.graph_init(home=home, options=dict(options))
        self.recover()

    def _refs_without_rowid(self) -> None:
        """Rebuild a root's refcount table made before it was WITHOUT ROWID.

        Keyed by its primary key alone, a refcount change writes one page to the
        WAL instead of two (table and index): every get and put commits one.
        """
        find = "SELECT sql FROM sqlite_master WHERE type='table' AND name='graph_mount_refs'"
        if "WITHOUT ROWID" in self.state.query(find)[0]["sql"]:
            return
        with self.state.transaction() as db:
            if "WITHOUT ROWID" in db.execute(find).fetchone()["sql"]:
                return  # another process rebuilt it meanwhile
            db.execute("ALTER TABLE graph_mount_refs RENAME TO graph_mount_refs_with_rowid")
            db.execute(SCHEMA[SCHEMA.index("CREATE TABLE IF NOT EXISTS graph_mount_refs") :])
            db.execute("INSERT INTO graph_mount_refs SELECT driver, id, count FROM graph_mount_refs_with_rowid")
            db.execute("DROP TABLE graph_mount_refs_with_rowid")

    # -- registry ---------------------------------------------------------

    def _row(self, layer_id: str) -> dict[str, object] | None:
        rows = self.state.query("SELECT * FROM graph_layers WHERE driver=? AND id=?", (self.name, layer_id))
        return dict(rows[0]) if rows else None

    def _ready_row(self, layer_id: str) -> dict[str, object]:
        row = self._row(layer_id)
        if row is None or row["state"] != "ready":
            raise LayerNotFound(f"layer '{layer_id}' does not exist in storage driver '{self.name}'")
        return row

    def parent(self, layer_id: str) -> str | None:
        parent = self._ready_row(layer_id)["parent"]
        return str(parent) if parent is not None else None

    def depth(self, layer_id: str) -> int:
        """Number of layers in the chain ending at ``layer_id`` (a base layer is 1)."""
        depth, current = 0, layer_id
        while current is not None:
            depth += 1
            row = self._row(current)
            current = str(row["parent"]) if row and row["parent"] is not None else None  # type: ignore[assignment]
        return depth

    def layers(self) -> list[str]:
        rows = self.state.query(
            "SELECT id FROM graph_layers WHERE driver=? AND state='ready' ORDER BY created, id", (self.name,)
        )
        return [str(r["id"]) for r in rows]

    def records(self) -> list[LayerRecord]:
        """Every ready layer with its parent, kind and mount refcount, oldest first."""
        rows = self.state.query(
            "SELECT l.id, l.parent, l.rw, l.created, COALESCE(m.count, 0) AS mounts FROM graph_layers l "
            "LEFT JOIN graph_mount_refs m ON m.driver = l.driver AND m.id = l.id "
            "WHERE l.driver=? AND l.state='ready' ORDER BY l.created, l.id",
            (self.name,),
        )
        return [
            LayerRecord(
                id=str(r["id"]),
                parent=str(r["parent"]) if r["parent"] is not None else None,
                rw=bool(r["rw"]),
                created=float(r["created"]),
                mounts=int(r["mounts"]),
            )
            for r in rows
        ]

    def children(self, layer_id: str) -> list[str]:
        rows = self.state.query(
            "SELECT id FROM graph_layers WHERE driver=? AND parent=? ORDER BY id", (self.name, layer_id)
        )
        return [str(r["id"]) for r in rows]

    def recover(self) -> None:
        """Remove layers a dead process left half-created or half-removed."""
        rows = self.state.query(
            "SELECT id, pid FROM graph_layers WHERE driver=? AND state!='ready' ORDER BY created DESC",
            (self.name,),
        )
        for row in rows:
            if not pid_alive(int(row["pid"])) or int(row["pid"]) == os.getpid():
                self._discard(str(row["id"]))

    def _discard(self, layer_id: str) -> None:
        self._hook.graph_put(layer_id=layer_id)
        if self._hook.graph_exists(layer_id=layer_id):
            self._hook.graph_remove(layer_id=layer_id)
        with self.state.transaction() as db:
            db.execute("DELETE FROM graph_mount_refs WHERE driver=? AND id=?", (self.name, layer_id))
            db.execute("DELETE FROM graph_layers WHERE driver=? AND id=?", (self.name, layer_id))

    # -- lifecycle --------------------------------------------------------

    def _begin_create(self, layer_id: str, parent: str | None, rw: bool) -> None:
        archive.check_layer_id(layer_id)
        with self.state.transaction() as db:
            if self._row(layer_id) is not None:
                raise LayerExists(f"layer '{layer_id}' already exists in storage driver '{self.name}'")
            if parent is not None:
                self._ready_row(parent)
                depth = self.depth(parent) + 1
                if depth > self.capabilities.max_depth:
                    raise DepthLimitExceeded(
                        f"layer '{layer_id}' would be {depth} layers deep, but storage driver "
                        f"'{self.name}' mounts at most {self.capabilities.max_depth}; flatten the image"
                    )
            db.execute(
                "INSERT INTO graph_layers VALUES (?, ?, ?, ?, 'creating', ?, ?)",
                (self.name, layer_id, parent, int(rw), os.getpid(), time.time()),
            )

    def _finish_create(self, layer_id: str) -> None:
        with self.state.transaction() as db:
            db.execute("UPDATE graph_layers SET state='ready' WHERE driver=? AND id=?", (self.name, layer_id))

    @contextmanager
    def _creating(self, layer_id: str, parent: str | None, rw: bool) -> Iterator[None]:
        self._begin_create(layer_id, parent, rw)
        try:
            yield
        except BaseException:
            self._discard(layer_id)
            raise
        self._finish_create(layer_id)

    def create(self, layer_id: str, parent: str | None = None, storage_opts: Mapping[str, str] | None = None) -> None:
        """Create read-only layer ``layer_id`` on ``parent``; it is visible once complete."""
        with self._creating(layer_id, parent, rw=False):
            self._hook.graph_create(layer_id=layer_id, parent=parent, storage_opts=dict(storage_opts or {}))

    def create_rw(
        self, layer_id: str, parent: str | None = None, storage_opts: Mapping[str, str] | None = None
    ) -> None:
        """Create read-write layer ``layer_id`` on ``parent``."""
        with self._creating(layer_id, parent, rw=True):
            self._hook.graph_create_rw(layer_id=layer_id, parent=parent, storage_opts=dict(storage_opts or {}))

    def create_from_tar(
        self,
        layer_id: str,
        parent: str | None,
        tar: BinaryIO,
        storage_opts: Mapping[str, str] | None = None,
    ) -> int:
        """Create read-only ``layer_id`` on ``parent`` and apply a layer tar; all or nothing.

        Returns the applied size. The tar may be gzip or zstd compressed.
        """
        with self._creating(layer_id, parent, rw=False):
            self._hook.graph_create(layer_id=layer_id, parent=parent, storage_opts=dict(storage_opts or {}))
            return self._apply(layer_id, parent, tar)

    def apply_diff(self, layer_id: str, tar: BinaryIO) -> int:
        """Apply a layer tar to existing layer ``layer_id``; it is hidden until complete."""
        row = self._ready_row(layer_id)
        parent = str(row["parent"]) if row["parent"] is not None else None
        with self.state.transaction() as db:
            db.execute(
                "UPDATE graph_layers SET state='creating', pid=? WHERE driver=? AND id=?",
                (os.getpid(), self.name, layer_id),
            )
        try:
            size = self._apply(layer_id, parent, tar)
        except BaseException:
            self._discard(layer_id)
            raise
        self._finish_create(layer_id)
        return size

    def _apply(self, layer_id: str, parent: str | None, tar: BinaryIO) -> int:
        with archive.open_layer_stream(tar) as stream:
            size = self._hook.graph_apply_diff(layer_id=layer_id, parent=parent, tar=stream)
            if size is not None:
                return int(size)
            with self._mounted_any(layer_id) as root:
                return archive.apply_layer_tar(stream, root, archive.WhiteoutFormat.DELETE)

    def remove(self, layer_id: str) -> None:
        """Remove ``layer_id``; refused while it is mounted or has children."""
        self._ready_row(layer_id)
        with self.state.transaction() as db:
            children = self.children(layer_id)
            if children:
                raise LayerHasChildren(
                    f"layer '{layer_id}' is the parent of {', '.join(children)}; remove those first"
                )
            refs = self.refcount(layer_id)
            if refs and not self.capabilities.remove_while_mounted:
                raise LayerInUse(
                    f"layer '{layer_id}' is mounted ({refs} reference(s)); unmount it first "
                    f"('drivebay graph unmount {layer_id}')"
                )
            db.execute(
                "UPDATE graph_layers SET state='removing', pid=? WHERE driver=? AND id=?",
                (os.getpid(), self.name, layer_id),
            )
        self._discard(layer_id)

    def exists(self, layer_id: str) -> bool:
        row = self._row(layer_id)
        return row is not None and row["state"] == "ready" and bool(self._hook.graph_exists(layer_id=layer_id))

    # -- mounts -----------------------------------------------------------

    def refcount(self, layer_id: str) -> int:
        rows = self.state.query(
            "SELECT count FROM graph_mount_refs WHERE driver=? AND id=?", (self.name, layer_id)
        )
        return int(rows[0]["count"]) if rows else 0

    def get(self, layer_id: str) -> Path:
        """Mount ``layer_id`` (or adopt its mount) and take one reference; returns the merged view."""
        return self._get(layer_id, ready_only=True)

    def _get(self, layer_id: str, ready_only: bool = False) -> Path:
        # The hot path of every mount: one statement both takes the reference and, with ready_only, finds out
        # whether the layer is ready; a failed mount rolls the reference back with the transaction.
        with self.state.transaction() as db:
            taken = db.execute(_TAKE_READY_REF if ready_only else _TAKE_REF, (self.name, layer_id)).rowcount
            if not taken:
                raise LayerNotFound(f"layer '{layer_id}' does not exist in storage driver '{self.name}'")
            path = self._hook.graph_get(layer_id=layer_id)
        # Path() of a Path parses it again, which costs more than checking.
        return path if isinstance(path, Path) else Path(path)

    def put(self, layer_id: str) -> None:
        """Drop one reference to ``layer_id``; the last one unmounts it."""
        with self.state.transaction() as db:
            refs = self.refcount(layer_id)
            if refs == 0:
                if self._row(layer_id) is None:
                    raise LayerNotFound(f"layer '{layer_id}' does not exist in storage driver '{self.name}'")
                raise LayerInUse(f"layer '{layer_id}' is not mounted; nothing to unmount")
            if refs == 1:
                self._hook.graph_put(layer_id=layer_id)
                db.execute("DELETE FROM graph_mount_refs WHERE driver=? AND id=?", (self.name, layer_id))
            else:
                db.execute(
                    "UPDATE graph_mount_refs SET count = count - 1 WHERE driver=? AND id=?", (self.name, layer_id)
                )

    @contextmanager
    def mounted(self, layer_id: str) -> Iterator[Path]:
        """``get`` for the duration of a block."""
        path = self.get(layer_id)
        try:
            yield path
        finally:
            self.put(layer_id)

    @contextmanager
    def _mounted_any(self, layer_id: str) -> Iterator[Path]:
        """As :meth:`mounted`, for a layer still being created."""
        path = self._get(layer_id)
        try:
            yield path
        finally:
            self.put(layer_id)

    def mounts(self, layer_id: str) -> MountPlan:
        """How to mount ``layer_id`` yourself, as a containerd snapshotter answers.

        A driver's own description (``graph_mounts``) takes no reference. A
        driver without one gets a bind mount of its merged view; that view must
        exist, so the layer is mounted and one reference taken, which the plan
        says and the caller releases with :meth:`put` when done.
        """
        rw = bool(self._ready_row(layer_id)["rw"])
        described = self._hook.graph_mounts(layer_id=layer_id)
        if described is not None:
            return MountPlan(tuple(described), holds_reference=False)
        path = self._get(layer_id)
        return MountPlan((Mount("bind", str(path), ("rbind", "rw" if rw else "ro")),), holds_reference=True)

    def cleanup(self) -> None:
        """Unmount everything and forget all references (as moby's Cleanup at shutdown)."""
        self._hook.graph_cleanup()
        with self.state.transaction() as db:
            db.execute("DELETE FROM graph_mount_refs WHERE driver=?", (self.name,))

    def status(self) -> list[tuple[str, str]]:
        return list(self._hook.graph_status())

    def metadata(self, layer_id: str) -> dict[str, str]:
        self._ready_row(layer_id)
        return dict(self._hook.graph_metadata(layer_id=layer_id))

    # -- diffs ------------------------------------------------------------

    def _resolve_parent(self, layer_id: str, parent: str | None) -> str | None:
        own = self.parent(layer_id)
        if parent == OWN_PARENT:
            return own
        if parent is not None:
            self._ready_row(parent)
        return parent

    @contextmanager
    def _views(self, layer_id: str, parent: str | None) -> Iterator[tuple[Path, Path | None]]:
        with self.mounted(layer_id) as root:
            if parent is None:
                yield root, None
                return
            with self.mounted(parent) as parent_root:
                yield root, parent_root

    def diff(self, layer_id: str, out: BinaryIO, parent: str | None = OWN_PARENT) -> None:
        """Write ``layer_id``'s layer tar against ``parent`` (default: its own parent) to ``out``."""
        parent = self._resolve_parent(layer_id, parent)
        if self._hook.graph_diff(layer_id=layer_id, parent=parent, out=out):
            return
        self.naive_diff(layer_id, parent, out)

    def naive_diff(self, layer_id: str, parent: str | None, out: BinaryIO) -> None:
        """The layer tar from comparing the mounted trees: the fallback, and the yardstick for native diffs."""
        with self._views(layer_id, parent) as (root, parent_root):
            if parent_root is None:
                # Everything is added: the same members, in the same order, as the changes tar of a
                # comparison with nothing, without making a Change per path first.
                archive.write_tree_tar(out, root, archive.WhiteoutFormat.DELETE)
                return
            archive.write_changes_tar(out, root, archive.naive_changes(root, parent_root))

    def changes(self, layer_id: str, parent: str | None = OWN_PARENT) -> list[Change]:
        """``docker diff`` of ``layer_id`` against ``parent``, sorted by path."""
        parent = self._resolve_parent(layer_id, parent)
        native = self._hook.graph_changes(layer_id=layer_id, parent=parent)
        if native is not None:
            return sorted(native)
        return self.naive_changes(layer_id, parent)

    def naive_changes(self, layer_id: str, parent: str | None) -> list[Change]:
        """The tree comparison every native ``changes`` must agree with."""
        with self._views(layer_id, parent) as (root, parent_root):
            return archive.naive_changes(root, parent_root)

    def diff_size(self, layer_id: str, parent: str | None = OWN_PARENT) -> int:
        parent = self._resolve_parent(layer_id, parent)
        native = self._hook.graph_diff_size(layer_id=layer_id, parent=parent)
        if native is not None:
            return int(native)
        with self._views(layer_id, parent) as (root, parent_root):
            return archive.changes_size(root, archive.naive_changes(root, parent_root))
