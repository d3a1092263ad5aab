"""What the snapshotter knows of containerd's snapshots, in the root's ``drivebay.db``.

containerd names snapshots with opaque keys (``default/12/t2``) that are no
valid layer IDs, so each snapshot maps to a layer ID of our own. The row also
keeps the snapshot's kind, parent key, labels, times, the mount specs handed
out (they are fixed for a layer's life) and, once committed, its usage.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from drivebay.errors import SnapshotExists, SnapshotNotFound
from drivebay.hookspecs.graph import Mount
from drivebay.state import StateDB

SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshotter_snapshots (
    driver TEXT NOT NULL,
    key TEXT NOT NULL,
    layer TEXT NOT NULL,
    parent TEXT,
    kind TEXT NOT NULL CHECK (kind IN ('view', 'active', 'committed')),
    labels TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    mounts TEXT,
    holds_reference INTEGER NOT NULL,
    size INTEGER,
    inodes INTEGER,
    PRIMARY KEY (driver, key),
    UNIQUE (driver, layer)
)
"""


class Kind(enum.Enum):
    """containerd's snapshot kinds; the values match ``containerd.services.snapshots.v1.Kind``."""

    VIEW = 1
    ACTIVE = 2
    COMMITTED = 3


@dataclass(frozen=True)
class Snapshot:
    """One snapshot. ``mounts`` is empty for committed snapshots; ``holds_reference`` says
    whether handing out its mounts took a mount reference on the layer (drivers without a
    native mount description are bind-mounted through ``get``), to be dropped on commit or removal.
    """

    key: str
    layer: str
    parent: str | None
    kind: Kind
    labels: dict[str, str]
    created: float
    updated: float
    mounts: tuple[Mount, ...] = ()
    holds_reference: bool = False
    size: int | None = None
    inodes: int | None = None


def _mounts_json(mounts: tuple[Mount, ...]) -> str:
    return json.dumps([[m.type, m.source, list(m.options)] for m in mounts])


def _mounts_from_json(text: str | None) -> tuple[Mount, ...]:
    if not text:
        return ()
    return tuple(Mount(t, s, tuple(o)) for t, s, o in json.loads(text))


class SnapshotStore:
    """The snapshot rows of one graph driver; every change is one transaction."""

    def __init__(self, state: StateDB, driver: str) -> None:
        self.state = state
        self.driver = driver
        state.ensure_schema(SCHEMA)

    def _snapshot(self, row: Mapping[str, object]) -> Snapshot:
        return Snapshot(
            key=str(row["key"]),
            layer=str(row["layer"]),
            parent=str(row["parent"]) if row["parent"] is not None else None,
            kind=Kind[str(row["kind"]).upper()],
            labels=json.loads(str(row["labels"])),
            created=float(row["created"]),  # type: ignore[arg-type]
            updated=float(row["updated"]),  # type: ignore[arg-type]
            mounts=_mounts_from_json(row["mounts"]),  # type: ignore[arg-type]
            holds_reference=bool(row["holds_reference"]),
            size=int(row["size"]) if row["size"] is not None else None,  # type: ignore[call-overload]
            inodes=int(row["inodes"]) if row["inodes"] is not None else None,  # type: ignore[call-overload]
        )

    def find(self, key: str) -> Snapshot | None:
        rows = self.state.query(
            "SELECT * FROM snapshotter_snapshots WHERE driver=? AND key=?", (self.driver, key)
        )
        return self._snapshot(dict(rows[0])) if rows else None

    def get(self, key: str) -> Snapshot:
        snapshot = self.find(key)
        if snapshot is None:
            raise SnapshotNotFound(f"snapshot '{key}' does not exist in snapshotter '{self.driver}'")
        return snapshot

    def children(self, key: str) -> list[str]:
        rows = self.state.query(
            "SELECT key FROM snapshotter_snapshots WHERE driver=? AND parent=? ORDER BY key", (self.driver, key)
        )
        return [str(r["key"]) for r in rows]

    def all(self) -> Iterator[Snapshot]:
        rows = self.state.query(
            "SELECT * FROM snapshotter_snapshots WHERE driver=? ORDER BY created, key", (self.driver,)
        )
        return (self._snapshot(dict(r)) for r in rows)

    def layers(self) -> set[str]:
        rows = self.state.query("SELECT layer FROM snapshotter_snapshots WHERE driver=?", (self.driver,))
        return {str(r["layer"]) for r in rows}

    def add(self, snapshot: Snapshot) -> None:
        with self.state.transaction() as db:
            if self.find(snapshot.key) is not None:
                raise SnapshotExists(f"snapshot '{snapshot.key}' already exists in snapshotter '{self.driver}'")
            db.execute(
                "INSERT INTO snapshotter_snapshots VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self.driver,
                    snapshot.key,
                    snapshot.layer,
                    snapshot.parent,
                    snapshot.kind.name.lower(),
                    json.dumps(snapshot.labels, sort_keys=True),
                    snapshot.created,
                    snapshot.updated,
                    _mounts_json(snapshot.mounts) if snapshot.mounts else None,
                    int(snapshot.holds_reference),
                    snapshot.size,
                    snapshot.inodes,
                ),
            )

    def commit(self, key: str, name: str, labels: Mapping[str, str], size: int, inodes: int) -> Snapshot:
        """Turn active ``key`` into committed ``name``: same layer, new labels and times, usage fixed."""
        now = time.time()
        with self.state.transaction() as db:
            if self.find(name) is not None:
                raise SnapshotExists(f"snapshot '{name}' already exists in snapshotter '{self.driver}'")
            db.execute(
                "UPDATE snapshotter_snapshots SET key=?, kind='committed', labels=?, created=?, updated=?, "
                "mounts=NULL, holds_reference=0, size=?, inodes=? WHERE driver=? AND key=?",
                (name, json.dumps(dict(labels), sort_keys=True), now, now, size, inodes, self.driver, key),
            )
        return self.get(name)

    def set_labels(self, key: str, labels: Mapping[str, str]) -> Snapshot:
        with self.state.transaction() as db:
            self.get(key)
            db.execute(
                "UPDATE snapshotter_snapshots SET labels=?, updated=? WHERE driver=? AND key=?",
                (json.dumps(dict(labels), sort_keys=True), time.time(), self.driver, key),
            )
        return self.get(key)

    def remove(self, key: str) -> None:
        with self.state.transaction() as db:
            db.execute("DELETE FROM snapshotter_snapshots WHERE driver=? AND key=?", (self.driver, key))
