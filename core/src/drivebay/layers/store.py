"""Content-addressed layers on top of any graph driver (moby's layer store).

A layer has a diff ID (the sha256 of its uncompressed tar), a chain ID that
names it together with every layer below it (:func:`chain_id`), a random cache
ID (the graph driver's layer ID) and a size. Layers are shared: a layer is
kept while an image's top layer, a child layer or a live lease names it, and
:meth:`LayerStore.release` removes unused layers down the chain.

Original tars: ``image save`` gives back each loaded layer's tar byte for
byte. A loaded layer keeps its tar-split at
``<root>/layerdb/sha256/<chain hex>/layer.tarsplit``, under its chain ID as
Docker's layerdb does: the tar's headers and padding, with each regular
file's bytes named by path (:mod:`drivebay.archive.tarsplit`). Saving reads
those bytes back from the driver's view of the layer, which holds them as
the tar wrote them whatever the driver (only the file's bytes are read back;
headers, xattr order and hardlink choice come from the split), and hashes
the rebuilt tar against the diff ID. The files are read in C, each reached
from the layer's root without following a symlink, so a layer changed after
its load fails the save naming the file, never reading outside the layer.
The split is made in a thread beside the apply, in the same pass that hashes the tar
(:meth:`LayerStore.create_from_region`), so a load writes the layer's bytes
once, not twice. A tar that removes or replaces one of its own files cannot
be rebuilt from the layer; it is kept whole, as ``layer.tar``, and so are the
tars of imported and committed layers.

Crash safety: a layer row is inserted as ``creating`` (with the owner's PID and
the cache ID) before the driver is touched, so whatever a killed process left
is found and removed at the next start (:meth:`LayerStore.recover`). Temporary
tars are named after the owning PID for the same reason. The tar is moved into
place in the same transaction that makes the row ``ready``.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

from drivebay import archive
from drivebay.errors import DigestMismatch, LayerNotFound
from drivebay.facades.graph import GraphDriver
from drivebay.layers.blobs import (
    ChunkFeed,
    FeedAbandoned,
    FileRegion,
    KeptSplit,
    Materialized,
    decompress,
    materialize,
    split_compressed,
    split_plain,
)
from drivebay.layers.crashpoints import crash_during_read, crash_point
from drivebay.layers.image_archive import TarSource
from drivebay.layers.schema import SCHEMA
from drivebay.processes import pid_alive
from drivebay.state import StateDB

CLAIM_POLL_SECONDS = 0.1


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def chain_id(parent: str | None, diff_id: str) -> str:
    """The chain ID of a layer with ``diff_id`` on top of the layer named ``parent`` (a chain ID)."""
    if parent is None:
        return diff_id
    return sha256_digest(f"{parent} {diff_id}".encode())


def chain_ids(diff_ids: Iterable[str]) -> list[str]:
    """The chain ID of every layer of an image, bottom first."""
    chains: list[str] = []
    for diff_id in diff_ids:
        chains.append(chain_id(chains[-1] if chains else None, diff_id))
    return chains


def digest_hex(digest: str) -> str:
    """``sha256:<hex>`` -> ``<hex>``; refuses anything else, since it becomes a file name."""
    algo, _, hex_part = digest.partition(":")
    if algo != "sha256" or len(hex_part) != 64 or any(c not in "0123456789abcdef" for c in hex_part):
        raise DigestMismatch(f"'{digest}' is not a sha256 digest (expected 'sha256:' and 64 lowercase hex digits)")
    return hex_part


@dataclass(frozen=True)
class Layer:
    """A ready layer."""

    chain_id: str
    diff_id: str
    parent: str | None
    cache_id: str
    size: int
    tar_size: int
    created: float


@dataclass
class Lease:
    """Layers this process holds while it builds an image; released when the image is registered."""

    chain_ids: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Claim:
    """A layer this process promised to create: its row is ``creating`` until :meth:`LayerStore.create`."""

    chain_id: str
    diff_id: str
    parent: str | None
    cache_id: str


@dataclass(frozen=True)
class TempTar:
    """An uncompressed layer tar written to the store's temporary directory."""

    path: Path
    diff_id: str
    size: int


def _raise_keep_failure(failures: list[BaseException]) -> None:
    """Raise what stopped the thread keeping a tar, unless it only stopped because the apply had."""
    if failures and not isinstance(failures[0], FeedAbandoned):
        raise failures[0]


def _verify(got: Materialized, diff_id: str, blob_digest: str | None, what: str) -> None:
    """Raise ``DigestMismatch`` unless the kept tar hashes to ``diff_id`` and its blob to ``blob_digest``."""
    if blob_digest is not None and got.blob_digest != blob_digest:
        raise DigestMismatch(
            f"{what}: blob content hashes to {got.blob_digest}, but the archive names it {blob_digest}; "
            "the archive is corrupt or was altered, fetch or save it again"
        )
    if got.diff_id != diff_id:
        raise DigestMismatch(
            f"{what}: uncompressed tar hashes to {got.diff_id}, but the image config lists diff ID {diff_id}; "
            "the archive is corrupt or was altered, fetch or save it again"
        )


def _row_to_layer(row: dict[str, object]) -> Layer:
    return Layer(
        chain_id=str(row["chain_id"]),
        diff_id=str(row["diff_id"]),
        parent=str(row["parent"]) if row["parent"] is not None else None,
        cache_id=str(row["cache_id"]),
        size=int(row["size"]),  # type: ignore[call-overload]
        tar_size=int(row["tar_size"]),  # type: ignore[call-overload]
        created=float(row["created"]),  # type: ignore[arg-type]
    )


class LayerStore:
    """Layers of one root, stored by its graph driver and described in ``drivebay.db``."""

    def __init__(self, root: Path, state: StateDB, graph: GraphDriver) -> None:
        self.root = root
        self.state = state
        self.graph = graph
        self.layerdb = root / "layerdb" / "sha256"
        self.tmpdir = root / "layerdb" / "tmp"
        self.layerdb.mkdir(parents=True, exist_ok=True)
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        state.ensure_schema(SCHEMA)
        self.recover()

    # -- reading ------------------------------------------------------------

    def _row(self, chain: str) -> dict[str, object] | None:
        rows = self.state.query("SELECT * FROM layerstore_layers WHERE chain_id=?", (chain,))
        return dict(rows[0]) if rows else None

    def find(self, chain: str) -> Layer | None:
        row = self._row(chain)
        return _row_to_layer(row) if row is not None and row["state"] == "ready" else None

    def get(self, chain: str) -> Layer:
        layer = self.find(chain)
        if layer is None:
            raise LayerNotFound(f"layer {chain} is not in the layer store; load or pull the image that has it")
        return layer

    def layers(self) -> list[Layer]:
        rows = self.state.query("SELECT * FROM layerstore_layers WHERE state='ready' ORDER BY created, chain_id")
        return [_row_to_layer(dict(r)) for r in rows]

    def chain(self, top: str | None) -> list[Layer]:
        """The layers from the bottom up to ``top``."""
        found: list[Layer] = []
        while top is not None:
            layer = self.get(top)
            found.append(layer)
            top = layer.parent
        return found[::-1]

    def tar_path(self, chain: str) -> Path:
        """Where a layer kept whole keeps its tar."""
        return self.layerdb / digest_hex(chain) / "layer.tar"

    def split_path(self, chain: str) -> Path:
        """Where a loaded layer keeps its tar-split."""
        return self.layerdb / digest_hex(chain) / "layer.tarsplit"

    def kept_path(self, chain: str) -> Path:
        """The file that keeps the layer's tar: its tar-split, or the tar itself."""
        split = self.split_path(chain)
        return split if split.exists() else self.tar_path(chain)

    def tar_source(self, chain: str) -> TarSource:
        """The layer's original tar, to be read once (by ``image save``)."""
        layer = self.get(chain)
        kept = self.kept_path(chain)
        if kept.suffix == ".tar":
            return TarSource.file(kept)
        return TarSource(layer.tar_size, lambda: self._rebuilt_tar(layer, kept))

    @contextmanager
    def _rebuilt_tar(self, layer: Layer, split: Path) -> Iterator[BinaryIO]:
        """The tar of ``split``, its files read from the driver's view of ``layer``, verified at the end."""
        root = self.graph.get(layer.cache_id)
        try:
            with (
                open(split, "rb") as kept,
                archive.RebuiltTar(kept, root, layer.diff_id, f"layer {layer.chain_id}") as tar,
            ):
                yield cast(BinaryIO, tar)
                tar.verify()
        finally:
            self.graph.put(layer.cache_id)

    # -- temporary tars -------------------------------------------------------

    def temp_path(self, suffix: str = ".tar") -> Path:
        """A fresh temporary path owned by this process (removed at the next start if it dies)."""
        return self.tmpdir / f"{os.getpid()}.{secrets.token_hex(8)}{suffix}"

    def write_temp_tar(self, source: FileRegion | BinaryIO) -> TempTar:
        """Write the uncompressed tar of ``source`` (plain, gzip or zstd) to a temporary file and hash it."""
        path = self.temp_path()
        try:
            got = materialize(source, path) if isinstance(source, FileRegion) else decompress(source, path)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return TempTar(path, got.diff_id, got.size)

    # -- creating -------------------------------------------------------------

    @contextmanager
    def leasing(self) -> Iterator[Lease]:
        """Hold the layers claimed or found in the block; afterwards unused ones are removed."""
        lease = Lease()
        try:
            yield lease
        finally:
            self.release(lease)

    def claim(self, lease: Lease, chain: str, diff_id: str, parent: str | None) -> Claim | None:
        """Lease ``chain``; return a :class:`Claim` if this process must create it, ``None`` if it exists.

        If another live process is creating or removing the same layer, wait for
        it: a shared layer is stored once.
        """
        while True:
            with self.state.transaction() as db:
                row = self._row(chain)
                if row is None or row["state"] == "ready":
                    db.execute("INSERT OR IGNORE INTO layerstore_leases VALUES (?, ?)", (chain, os.getpid()))
                    lease.chain_ids.add(chain)
                    if row is not None:
                        return None
                    cache_id = secrets.token_hex(32)
                    db.execute(
                        "INSERT INTO layerstore_layers VALUES (?, ?, ?, ?, 0, 0, 'creating', ?, ?)",
                        (chain, diff_id, parent, cache_id, os.getpid(), time.time()),
                    )
                    crash_point("layer:claimed")
                    return Claim(chain, diff_id, parent, cache_id)
                owner = int(row["pid"])  # type: ignore[call-overload]
            if not pid_alive(owner):
                self._purge(chain, owner)
            else:
                time.sleep(CLAIM_POLL_SECONDS)

    def create(self, claim: Claim, tar: TempTar) -> Layer:
        """Create the claimed layer from ``tar`` (whose digest is the claim's diff ID) and make it visible."""
        if tar.diff_id != claim.diff_id:
            raise DigestMismatch(
                f"layer {claim.chain_id}: tar hashes to {tar.diff_id}, expected diff ID {claim.diff_id}"
            )
        with open(tar.path, "rb") as stream:
            size = self._apply(claim, stream)
        return self._finish(claim, tar.path, tar.size, size)

    def create_from_region(
        self,
        claim: Claim,
        region: FileRegion,
        *,
        expected_blob: str | None = None,
        what: str = "layer",
        progress: Callable[[int], None] | None = None,
    ) -> Layer:
        """Create the claimed layer from a blob in a file (plain, gzip or zstd), keeping its tar, verified as it goes.

        The driver applies while a second thread hashes the uncompressed tar
        and writes its tar-split: a plain tar is applied straight from
        ``region`` while the thread reads it once more; a compressed one is
        decompressed by the thread, which hands each chunk on to the apply. So
        on two cores verifying and keeping add little to the apply's time. A
        tar the layer cannot give back (see the module docstring) is then kept
        whole, read from ``region`` again. ``expected_blob`` is the digest of
        the blob as stored. On a digest mismatch the applied layer is left to
        :meth:`abandon`; nothing becomes visible.
        """
        temp = self.temp_path(".tarsplit")
        kept: list[KeptSplit] = []
        failures: list[BaseException] = []
        feed = ChunkFeed() if region.is_compressed() else None

        def keep() -> None:
            try:
                if feed is None:
                    kept.append(split_plain(region, temp, progress))
                    return
                try:
                    with region.open() as raw:
                        kept.append(split_compressed(raw, temp, progress, tap=feed.put))
                finally:
                    feed.end()
            except BaseException as exc:  # raised in the caller's thread by _raise_keep_failure
                failures.append(exc)

        worker = threading.Thread(target=keep, name="drivebay-keep-tar")
        worker.start()
        try:
            try:
                with region.open() if feed is None else cast(BinaryIO, feed) as stream:
                    size = self._apply(claim, stream)
            except BaseException:
                if feed is not None:
                    feed.abandon()
                worker.join()
                # A blob that cannot be read or decompressed, or is not what the archive says,
                # explains an apply error about its end better than that error does.
                _raise_keep_failure(failures)
                if kept:
                    _verify(kept[0].materialized, claim.diff_id, expected_blob, what)
                raise
            worker.join()
            _raise_keep_failure(failures)
            _verify(kept[0].materialized, claim.diff_id, expected_blob, what)
            if kept[0].problem is not None:
                raise kept[0].problem
            if not kept[0].exact:
                temp.unlink()
                temp = self.temp_path()
                materialize(region, temp)
            return self._finish(claim, temp, kept[0].materialized.size, size)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def _apply(self, claim: Claim, stream: BinaryIO) -> int:
        parent_cache = None
        if claim.parent is not None:
            parent_row = self._row(claim.parent)
            if parent_row is None or parent_row["state"] != "ready":
                raise LayerNotFound(f"parent layer {claim.parent} of {claim.chain_id} is not ready")
            parent_cache = str(parent_row["cache_id"])
        crash_point("layer:applying")
        size = self.graph.create_from_tar(claim.cache_id, parent_cache, crash_during_read(stream, "layer:mid-apply"))
        crash_point("layer:applied")
        return size

    def _finish(self, claim: Claim, kept: Path, tar_size: int, size: int) -> Layer:
        """Move the kept tar (or tar-split, by its suffix) into place and make the layer visible, in one transaction."""
        final = self.split_path(claim.chain_id) if kept.suffix == ".tarsplit" else self.tar_path(claim.chain_id)
        with self.state.transaction() as db:
            final.parent.mkdir(exist_ok=True)
            os.replace(kept, final)
            db.execute(
                "UPDATE layerstore_layers SET state='ready', size=?, tar_size=?, created=? WHERE chain_id=?",
                (size, tar_size, time.time(), claim.chain_id),
            )
        crash_point("layer:ready")
        return self.get(claim.chain_id)

    def add_tar(self, lease: Lease, tar: TempTar, parent: str | None) -> Layer:
        """Store ``tar`` as a layer on ``parent`` (a chain ID) unless it exists; the temporary tar is consumed."""
        try:
            claim = self.claim(lease, chain_id(parent, tar.diff_id), tar.diff_id, parent)
            if claim is None:
                return self.get(chain_id(parent, tar.diff_id))
            try:
                return self.create(claim, tar)
            except BaseException:
                self.abandon(claim)
                raise
        finally:
            tar.path.unlink(missing_ok=True)

    def hold(self, lease: Lease, chains: Iterable[str]) -> None:
        """Lease existing layers so that they stay while this process reads them."""
        with self.state.transaction() as db:
            for chain in chains:
                self.get(chain)
                db.execute("INSERT OR IGNORE INTO layerstore_leases VALUES (?, ?)", (chain, os.getpid()))
                lease.chain_ids.add(chain)

    def abandon(self, claim: Claim) -> None:
        """Undo a claim that will not be completed (its layer was not made ready)."""
        row = self._row(claim.chain_id)
        if row is not None and row["state"] == "creating" and int(row["pid"]) == os.getpid():  # type: ignore[call-overload]
            self._purge(claim.chain_id, os.getpid())

    # -- removing -------------------------------------------------------------

    def release(self, lease: Lease) -> None:
        """Drop the lease and remove every leased layer nothing else uses, down the chain."""
        with self.state.transaction() as db:
            for chain in lease.chain_ids:
                db.execute("DELETE FROM layerstore_leases WHERE chain_id=? AND pid=?", (chain, os.getpid()))
        chains = sorted(lease.chain_ids)
        lease.chain_ids.clear()
        self.collect(chains)

    def collect(self, chains: Iterable[str]) -> list[str]:
        """Remove each of ``chains`` that is unused, then its parents while they become unused.

        Returns the chain IDs removed.
        """
        removed = []
        for start in chains:
            current: str | None = start
            while current is not None:
                gone = self._remove_if_unused(current)
                if gone is None:
                    break
                removed.append(gone.chain_id)
                current = gone.parent
        return removed

    def _remove_if_unused(self, chain: str) -> Layer | None:
        """Remove ``chain`` if nothing uses it and return what it was, else ``None``."""
        with self.state.transaction() as db:
            row = self._row(chain)
            if row is None or row["state"] != "ready" or self._users(chain):
                return None
            db.execute("UPDATE layerstore_layers SET state='removing', pid=? WHERE chain_id=?", (os.getpid(), chain))
        self._purge(chain, os.getpid())
        return _row_to_layer(row)

    def _users(self, chain: str) -> list[str]:
        """What keeps ``chain``: child layers, images whose top it is, and live leases."""
        users = [
            f"layer {r['chain_id']}"
            for r in self.state.query("SELECT chain_id FROM layerstore_layers WHERE parent=?", (chain,))
        ]
        users += [
            f"image {r['id']}" for r in self.state.query("SELECT id FROM layerstore_images WHERE top_chain=?", (chain,))
        ]
        for r in self.state.query("SELECT pid FROM layerstore_leases WHERE chain_id=?", (chain,)):
            if pid_alive(int(r["pid"])):
                users.append(f"process {r['pid']}")
        return users

    def _purge(self, chain: str, owner: int) -> None:
        """Remove every trace of ``chain`` if its row is still owned by ``owner`` (take it over first)."""
        with self.state.transaction() as db:
            row = self._row(chain)
            if row is None or row["state"] == "ready" or int(row["pid"]) != owner:  # type: ignore[call-overload]
                return
            db.execute("UPDATE layerstore_layers SET state='removing', pid=? WHERE chain_id=?", (os.getpid(), chain))
        cache_id = str(row["cache_id"])
        if self.graph.exists(cache_id):
            self.graph.remove(cache_id)
        shutil.rmtree(self.layerdb / digest_hex(chain), ignore_errors=True)
        with self.state.transaction() as db:
            db.execute("DELETE FROM layerstore_layers WHERE chain_id=?", (chain,))

    # -- recovery -------------------------------------------------------------

    def recover(self) -> None:
        """Finish what dead processes left: half-made or half-removed layers, leases, temporary tars."""
        for row in self.state.query("SELECT chain_id, pid FROM layerstore_layers WHERE state!='ready'"):
            if not pid_alive(int(row["pid"])):
                self._purge(str(row["chain_id"]), int(row["pid"]))
        with self.state.transaction() as db:
            for row in db.execute("SELECT DISTINCT pid FROM layerstore_leases").fetchall():
                if not pid_alive(int(row["pid"])):
                    db.execute("DELETE FROM layerstore_leases WHERE pid=?", (row["pid"],))
        for path in self.tmpdir.iterdir():
            pid = path.name.partition(".")[0]
            if not pid.isdigit() or not pid_alive(int(pid)):
                path.unlink(missing_ok=True)
        tops = self.state.query(
            "SELECT chain_id FROM layerstore_layers AS l WHERE state='ready' "
            "AND NOT EXISTS (SELECT 1 FROM layerstore_layers AS c WHERE c.parent = l.chain_id)"
        )
        self.collect(str(r["chain_id"]) for r in tops)
