"""containerd's snapshot model on top of a graph driver.

- An **active** snapshot is a read-write layer (``create_rw``) on its parent's layer.
- A **view** is a read-only layer (``create``) on its parent's layer; its mounts carry ``ro``.
- **Commit** keeps the active's layer and makes it the committed snapshot's: the graph
  contract has no freeze operation, and copying the layer into a new read-only one would
  write every unpacked layer twice. containerd never hands out mounts of a committed
  snapshot, so nothing writes to that layer again.
- Mount specs come from the driver's ``mounts()`` and are computed once per snapshot:
  a layer's stack is fixed for its life. A driver without its own description gets a
  bind of its mounted view; the snapshot then holds that one reference
  (``MountPlan.holds_reference``) until it is removed.

All calls that touch the driver hold one lock: the graph facade is shared by the
server's threads, and containerd's own calls are few and short next to the work
each one does (unpacking happens in containerd).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence

from drivebay.errors import InvalidSnapshotRequest, SnapshotExists, SnapshotStateError
from drivebay.facades.graph import GraphDriver
from drivebay.hookspecs.graph import Mount
from drivebay.snapshotter.filters import compile_filters
from drivebay.snapshotter.store import Kind, Snapshot, SnapshotStore

LAYER_PREFIX = "containerd-"
"""Layer IDs this snapshotter made start with this, so Cleanup removes only its own orphans."""

ACTIVE_USAGE_TTL = 30.0
"""Seconds an active snapshot's usage is reused; CRI asks every 10 s for every container."""


def _read_only(mount: Mount) -> Mount:
    """A view's mount, read-only even where the driver's read-only stack mounts writable by default
    (a fuse-overlayfs stack without upperdir, say): containerd promises views cannot be written.
    """
    if "ro" in mount.options:
        return mount
    return Mount(mount.type, mount.source, ("ro", *(o for o in mount.options if o != "rw")))


def new_layer_id() -> str:
    return f"{LAYER_PREFIX}{uuid.uuid4().hex}"


class Snapshotter:
    """The ten calls of ``containerd.services.snapshots.v1.Snapshots`` over one graph driver."""

    def __init__(self, graph: GraphDriver) -> None:
        self.graph = graph
        self.store = SnapshotStore(graph.state, graph.name)
        self._lock = threading.Lock()
        self._active_usage: dict[str, tuple[float, int, int]] = {}
        with self._lock:
            self._forget_lost_layers()

    @property
    def name(self) -> str:
        return self.graph.name

    def _forget_lost_layers(self) -> None:
        """Drop rows whose layer is gone: a removal interrupted between the driver and the row."""
        for snapshot in list(self.store.all()):
            if not self.graph.exists(snapshot.layer):
                self.store.remove(snapshot.key)

    # -- creating ---------------------------------------------------------

    def prepare(self, key: str, parent: str, labels: Mapping[str, str]) -> tuple[Mount, ...]:
        """An active snapshot ``key`` on committed ``parent`` (``""``: empty); returns its mounts."""
        return self._create(key, parent, labels, Kind.ACTIVE)

    def view(self, key: str, parent: str, labels: Mapping[str, str]) -> tuple[Mount, ...]:
        """A read-only snapshot ``key`` of committed ``parent``; returns its mounts."""
        return self._create(key, parent, labels, Kind.VIEW)

    def _parent_layer(self, key: str, parent: str) -> str | None:
        if not parent:
            return None
        snapshot = self.store.get(parent)
        if snapshot.kind is not Kind.COMMITTED:
            raise InvalidSnapshotRequest(
                f"parent '{parent}' of snapshot '{key}' is {snapshot.kind.name.lower()}, not committed; "
                "commit it first"
            )
        return snapshot.layer

    def _create(self, key: str, parent: str, labels: Mapping[str, str], kind: Kind) -> tuple[Mount, ...]:
        with self._lock:
            if self.store.find(key) is not None:
                raise SnapshotExists(f"snapshot '{key}' already exists in snapshotter '{self.name}'")
            parent_layer = self._parent_layer(key, parent)
            layer = new_layer_id()
            if kind is Kind.ACTIVE:
                self.graph.create_rw(layer, parent_layer)
            else:
                self.graph.create(layer, parent_layer)
            holds_reference = False
            try:
                plan = self.graph.mounts(layer)
                holds_reference = plan.holds_reference
                mounts = plan.mounts
                if kind is Kind.VIEW:
                    mounts = tuple(_read_only(m) for m in mounts)
                now = time.time()
                self.store.add(
                    Snapshot(key, layer, parent or None, kind, dict(labels), now, now, mounts, holds_reference)
                )
            except BaseException:
                self._release(layer, holds_reference)
                self.graph.remove(layer)
                raise
            return mounts

    def _release(self, layer: str, holds_reference: bool) -> None:
        if holds_reference:
            self.graph.put(layer)

    # -- reading ----------------------------------------------------------

    def mounts(self, key: str) -> tuple[Mount, ...]:
        snapshot = self.store.get(key)
        if snapshot.kind is Kind.COMMITTED:
            raise SnapshotStateError(
                f"snapshot '{key}' is committed and has no mounts; prepare or view a snapshot on it"
            )
        return snapshot.mounts

    def stat(self, key: str) -> Snapshot:
        return self.store.get(key)

    def list_snapshots(self, filters: Sequence[str]) -> Iterator[Snapshot]:
        matches = compile_filters(filters)
        return (s for s in self.store.all() if matches(s))

    def usage(self, key: str) -> tuple[int, int]:
        """``(bytes, inodes)`` the snapshot adds over its parent; committed ones are fixed at commit."""
        snapshot = self.store.get(key)
        if snapshot.kind is Kind.COMMITTED and snapshot.size is not None and snapshot.inodes is not None:
            return snapshot.size, snapshot.inodes
        if snapshot.kind is Kind.VIEW:
            return 0, 0
        cached = self._active_usage.get(snapshot.layer)
        if cached is not None and time.monotonic() - cached[0] < ACTIVE_USAGE_TTL:
            return cached[1], cached[2]
        with self._lock:
            size, inodes = self._measure(snapshot.layer)
        self._active_usage[snapshot.layer] = (time.monotonic(), size, inodes)
        return size, inodes

    def _measure(self, layer: str) -> tuple[int, int]:
        return self.graph.diff_size(layer), len(self.graph.changes(layer))

    # -- changing ---------------------------------------------------------

    def commit(self, name: str, key: str, labels: Mapping[str, str]) -> None:
        """Active ``key`` becomes committed ``name``; ``key`` is gone afterwards."""
        with self._lock:
            snapshot = self.store.get(key)
            if snapshot.kind is not Kind.ACTIVE:
                raise SnapshotStateError(
                    f"snapshot '{key}' is {snapshot.kind.name.lower()}, not active; only active snapshots commit"
                )
            if self.store.find(name) is not None:
                raise SnapshotExists(f"snapshot '{name}' already exists in snapshotter '{self.name}'")
            size, inodes = self._measure(snapshot.layer)
            self.store.commit(key, name, labels, size, inodes)
            self._release(snapshot.layer, snapshot.holds_reference)
            self._active_usage.pop(snapshot.layer, None)

    def update_labels(self, key: str, labels: Mapping[str, str], paths: Sequence[str]) -> Snapshot:
        """Set labels as containerd's ``Update`` does: no paths replaces them all;
        ``labels`` replaces them all; ``labels.KEY`` sets or (absent from ``labels``) deletes one.
        """
        with self._lock:
            current = dict(self.store.get(key).labels)
            if not paths:
                return self.store.set_labels(key, labels)
            for path in paths:
                if path == "labels":
                    current = dict(labels)
                elif path.startswith("labels."):
                    label = path.removeprefix("labels.")
                    if label in labels:
                        current[label] = labels[label]
                    else:
                        current.pop(label, None)
                else:
                    raise InvalidSnapshotRequest(
                        f"cannot update field '{path}' of snapshot '{key}': only labels are mutable"
                    )
            return self.store.set_labels(key, current)

    def remove(self, key: str) -> None:
        with self._lock:
            snapshot = self.store.get(key)
            children = self.store.children(key)
            if children:
                raise SnapshotStateError(
                    f"snapshot '{key}' is the parent of {', '.join(children)}; remove those first"
                )
            self._release(snapshot.layer, snapshot.holds_reference)
            self.graph.remove(snapshot.layer)
            self.store.remove(key)
            self._active_usage.pop(snapshot.layer, None)

    def cleanup(self) -> list[str]:
        """Remove this snapshotter's layers that no snapshot names (left by a crash); returns their IDs.

        Children go before parents, so an orphaned chain goes whole.
        """
        with self._lock:
            known = self.store.layers()
            orphans = [r for r in self.graph.records() if r.id.startswith(LAYER_PREFIX) and r.id not in known]
            removed = []
            for record in sorted(orphans, key=lambda r: -self.graph.depth(r.id)):
                for _ in range(record.mounts):
                    self.graph.put(record.id)
                self.graph.remove(record.id)
                removed.append(record.id)
            return removed
