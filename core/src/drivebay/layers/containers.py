"""Containers: a read-write layer over Docker's init layer over an image's top layer.

A container's layers are graph layers named like Docker's: ``<id>-init`` and
``<id>``. Mounts are the graph facade's refcounted mounts, so they survive
across CLI processes. Diff and commit compare the read-write layer with the
init layer, so the init files never show.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from drivebay import archive
from drivebay.errors import ContainerExists, ContainerNotFound, LayerInUse, UsageError
from drivebay.facades.graph import GraphDriver
from drivebay.hookspecs.graph import Change
from drivebay.layers.crashpoints import crash_point
from drivebay.layers.images import Image, ImageStore, normalize_ref
from drivebay.layers.initlayer import INIT_PATHS, populate_init_layer
from drivebay.layers.schema import SCHEMA
from drivebay.layers.store import LayerStore, TempTar
from drivebay.names import check_restricted_name
from drivebay.processes import pid_alive
from drivebay.state import StateDB
from drivebay.timestamps import format_timestamp


@dataclass(frozen=True)
class Container:
    """A ready container."""

    id: str
    name: str
    image_id: str
    init_layer: str
    rw_layer: str
    created: float


class _HashingWriter:
    """Writes through to ``out`` and hashes what passes: the diff ID of a committed layer."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.out.write(data)

    def flush(self) -> None:
        self.out.flush()


def _rows(state: StateDB, where: str, params: tuple[object, ...]) -> list[Container]:
    rows = state.query(f"SELECT * FROM layerstore_containers WHERE state='ready' AND {where}", params)
    return [
        Container(
            id=str(r["id"]),
            name=str(r["name"]),
            image_id=str(r["image_id"]),
            init_layer=str(r["init_layer"]),
            rw_layer=str(r["rw_layer"]),
            created=float(r["created"]),
        )
        for r in rows
    ]


def lookup_container(state: StateDB, ref: str) -> Container | None:
    """The container named ``ref``, or whose ID is or starts with ``ref``, without opening a graph driver.

    Other components (the log facade) find a container's ID and image through here.
    """
    state.ensure_schema(SCHEMA)
    found = _rows(state, "name=?", (ref,)) or _rows(state, "id=?", (ref,))
    if not found and re.fullmatch(r"[0-9a-f]{4,63}", ref):
        found = _rows(state, "id >= ? AND id < ?", (ref, ref + "g"))
        if len(found) > 1:
            raise UsageError(f"container ID prefix '{ref}' is ambiguous; give more digits or the name")
    return found[0] if found else None


class ContainerStore:
    """Containers of one root."""

    def __init__(self, state: StateDB, graph: GraphDriver, images: ImageStore) -> None:
        self.state = state
        self.graph = graph
        self.images = images
        self.layers: LayerStore = images.layers
        self.recover()

    # -- reading --------------------------------------------------------------

    def containers(self) -> list[Container]:
        return sorted(_rows(self.state, "1", ()), key=lambda c: (c.created, c.name))

    def get(self, ref: str) -> Container:
        """The container named ``ref``, or whose ID is or starts with ``ref``."""
        found = lookup_container(self.state, ref)
        if found is None:
            raise ContainerNotFound(f"no container named '{ref}'; see 'drivebay container ls'")
        return found

    def mount_count(self, container: Container) -> int:
        return self.graph.refcount(container.rw_layer)

    # -- lifecycle ------------------------------------------------------------

    def create(self, name: str, image_ref: str) -> Container:
        """Make container ``name`` from ``image_ref``: init layer, then read-write layer."""
        check_restricted_name(name, "container")
        container_id = secrets.token_hex(32)
        init_layer, rw_layer = f"{container_id}-init", container_id
        with self.state.transaction() as db:
            image = self.images.resolve(image_ref)
            if db.execute("SELECT 1 FROM layerstore_containers WHERE name=?", (name,)).fetchone():
                raise ContainerExists(
                    f"container name '{name}' is already in use; remove it ('drivebay container rm {name}') "
                    "or choose another name"
                )
            db.execute(
                "INSERT INTO layerstore_containers VALUES (?, ?, ?, ?, ?, 'creating', ?, ?)",
                (container_id, name, image.id, init_layer, rw_layer, os.getpid(), time.time()),
            )
        try:
            top = self.layers.get(image.top_chain).cache_id if image.top_chain is not None else None
            self.graph.create_rw(init_layer, top)
            with self.graph.mounted(init_layer) as init_root:
                populate_init_layer(init_root)
            self.graph.create_rw(rw_layer, init_layer)
        except BaseException:
            self._purge(container_id, os.getpid())
            raise
        with self.state.transaction() as db:
            db.execute("UPDATE layerstore_containers SET state='ready' WHERE id=?", (container_id,))
        return self.get(container_id)

    def remove(self, ref: str) -> None:
        """Remove a container and its layers; refused while it is mounted."""
        with self.state.transaction() as db:
            container = self.get(ref)
            refs = self.mount_count(container)
            if refs:
                raise LayerInUse(
                    f"container '{container.name}' is mounted ({refs} reference(s)); "
                    f"unmount it first ('drivebay container unmount {container.name}')"
                )
            db.execute(
                "UPDATE layerstore_containers SET state='removing', pid=? WHERE id=?", (os.getpid(), container.id)
            )
        self._purge(container.id, os.getpid())

    def _purge(self, container_id: str, owner: int) -> None:
        with self.state.transaction() as db:
            row = db.execute(
                "SELECT init_layer, rw_layer, pid, state FROM layerstore_containers WHERE id=?", (container_id,)
            ).fetchone()
            if row is None or row["state"] == "ready" or int(row["pid"]) != owner:
                return
            db.execute(
                "UPDATE layerstore_containers SET state='removing', pid=? WHERE id=?", (os.getpid(), container_id)
            )
        for layer in (str(row["rw_layer"]), str(row["init_layer"])):
            if self.graph.exists(layer):
                while self.graph.refcount(layer):
                    self.graph.put(layer)
                self.graph.remove(layer)
        with self.state.transaction() as db:
            db.execute("DELETE FROM layerstore_containers WHERE id=?", (container_id,))

    def recover(self) -> None:
        """Remove containers a dead process left half-created or half-removed."""
        for row in self.state.query("SELECT id, pid FROM layerstore_containers WHERE state!='ready'"):
            if not pid_alive(int(row["pid"])):
                self._purge(str(row["id"]), int(row["pid"]))

    # -- mounts and content ---------------------------------------------------

    def mount(self, ref: str) -> Path:
        return self.graph.get(self.get(ref).rw_layer)

    def unmount(self, ref: str) -> None:
        self.graph.put(self.get(ref).rw_layer)

    def changes(self, ref: str) -> list[Change]:
        """``docker diff``: changes against the init layer, the init paths themselves left out."""
        changes = self.graph.changes(self.get(ref).rw_layer)
        return [change for change in changes if change.path not in INIT_PATHS]

    def export(self, ref: str, out: BinaryIO) -> None:
        """Write the flattened root filesystem as a tar."""
        with self.graph.mounted(self.get(ref).rw_layer) as root:
            archive.write_tree_tar(out, root, archive.WhiteoutFormat.DELETE)

    def commit(self, ref: str, image_ref: str) -> Image:
        """Store the container's changes as a new layer on its image's, and tag the new image ``image_ref``."""
        tag = normalize_ref(image_ref)
        container = self.get(ref)
        base = self.images.resolve(container.image_id)
        temp = self.layers.temp_path()
        with self.layers.leasing() as lease:
            try:
                with open(temp, "wb") as f:
                    hashing = _HashingWriter(f)
                    self.graph.diff(container.rw_layer, hashing)  # type: ignore[arg-type]
                tar = TempTar(temp, "sha256:" + hashing.sha.hexdigest(), hashing.size)
            except BaseException:
                temp.unlink(missing_ok=True)
                raise
            crash_point("commit:diffed")
            layer = self.layers.add_tar(lease, tar, base.top_chain)
            config = base.parsed
            created = format_timestamp(time.time_ns())
            config["created"] = created
            config["container"] = container.id
            config["rootfs"]["diff_ids"] = [*config["rootfs"]["diff_ids"], layer.diff_id]
            config["history"] = [
                *(config.get("history") or []),
                {"created": created, "created_by": f"drivebay container commit {container.name}"},
            ]
            crash_point("commit:before-register")
            return self.images.register(json.dumps(config, separators=(",", ":")).encode(), [tag])
