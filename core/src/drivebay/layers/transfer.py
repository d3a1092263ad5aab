"""Moving images in and out of the store: ``image load``, ``image import`` and ``image save``.

Loading claims each missing layer first (so a concurrent load of the same
layer waits instead of storing it twice), then applies it straight from the
archive while another thread keeps and hashes its tar (decompressing it
first if it is gzip or zstd). A layer whose digests do not match is removed
before anything names it, and the images are registered together at the
end, so a failure registers nothing.
"""

from __future__ import annotations

import json
import os
import platform
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from drivebay.errors import InvalidArchive, UsageError
from drivebay.layers import docker_archive, oci_archive
from drivebay.layers.blobs import FileRegion
from drivebay.layers.crashpoints import crash_point
from drivebay.layers.image_archive import (
    ArchiveFile,
    ArchiveImage,
    LayerBlob,
    SavedImage,
    SavedLayer,
    open_image_archive,
)
from drivebay.layers.images import Image, ImageStore, normalize_ref, parse_config, unique
from drivebay.layers.progress import LoadProgress
from drivebay.layers.store import Claim, LayerStore, Lease, chain_id
from drivebay.timestamps import format_timestamp

FORMATS = ("docker", "oci")


def read_archive_images(arc: ArchiveFile) -> list[ArchiveImage]:
    """Every image in ``arc``, whichever of the two layouts it uses."""
    if arc.has("oci-layout") and arc.has("index.json"):
        return oci_archive.read_images(arc)
    if arc.has("manifest.json"):
        return docker_archive.read_images(arc)
    raise InvalidArchive(
        f"{arc.label} is neither a 'docker save' archive (no manifest.json) nor an OCI layout (no oci-layout "
        "and index.json); save it with 'docker save' or 'skopeo copy ... oci-archive:FILE'"
    )


def _load_layers(
    arc: ArchiveFile, found: ArchiveImage, layers: LayerStore, lease: Lease, progress: LoadProgress
) -> None:
    """Store the missing layers of one archived image, each verified against its diff ID as it is applied."""
    diff_ids = parse_config(found.config, found.source)["rootfs"]["diff_ids"]
    if len(diff_ids) != len(found.layers):
        raise InvalidArchive(
            f"{found.source}: the config lists {len(diff_ids)} diff IDs but the manifest {len(found.layers)} "
            "layers; the archive is corrupt"
        )
    claims: list[tuple[Claim, LayerBlob, str]] = []
    parent = None
    try:
        for number, (diff_id, blob) in enumerate(zip(diff_ids, found.layers, strict=True), 1):
            chain = chain_id(parent, diff_id)
            claim = layers.claim(lease, chain, diff_id, parent)
            if claim is not None:
                claims.append((claim, blob, f"{found.source}: layer {number} ({blob.member}, diff ID {diff_id})"))
            parent = chain
        progress.start_image(", ".join(found.tags) or found.source, sum(b.size for _, b, _ in claims), len(claims))
        for claim, blob, what in claims:
            layers.create_from_region(
                claim, arc.region(blob.member), expected_blob=blob.digest, what=what, progress=progress.advance
            )
            progress.layer_done()
    except BaseException:
        for claim, _, _ in claims:
            layers.abandon(claim)
        raise


def _archive_tags(image: ArchiveImage) -> tuple[str, ...]:
    try:
        return tuple(normalize_ref(tag) for tag in image.tags)
    except UsageError as exc:
        raise InvalidArchive(f"{image.source}: {exc}") from exc


@dataclass(frozen=True)
class LoadedImage:
    """An image loaded from an archive and the tags the archive gave it."""

    image: Image
    tags: tuple[str, ...]


def load_archive(path: Path, images: ImageStore, progress: LoadProgress) -> list[LoadedImage]:
    """Load every image of a ``docker save`` or OCI archive; all or nothing."""
    layers = images.layers
    with open_image_archive(path, layers.temp_path(".archive")) as arc:
        found = read_archive_images(arc)
        tags = [_archive_tags(image) for image in found]
        with layers.leasing() as lease:
            for image in found:
                _load_layers(arc, image, layers, lease, progress)
            crash_point("load:before-register")
            with images.state.transaction():
                return [
                    LoadedImage(images.register(image.config, image_tags, image.source), image_tags)
                    for image, image_tags in zip(found, tags, strict=True)
                ]


def import_rootfs(path: Path, ref: str | None, images: ImageStore) -> Image:
    """``docker import``: one layer from a root filesystem tar, a minimal config, history "Imported from -"."""
    tags = [normalize_ref(ref)] if ref else []
    layers = images.layers
    with layers.leasing() as lease:
        try:
            with open(path, "rb") as raw:
                info = os.fstat(raw.fileno())
                # A pipe (``-i /dev/stdin``) cannot be copied by offset; it is streamed instead.
                source = FileRegion(raw.fileno(), 0, info.st_size) if stat.S_ISREG(info.st_mode) else raw
                tar = layers.write_temp_tar(source)
        except OSError as exc:
            raise InvalidArchive(f"cannot read {path}: {exc.strerror}; check the path") from exc
        layer = layers.add_tar(lease, tar, None)
        created = format_timestamp(time.time_ns())
        config = {
            "architecture": oci_archive.host_architecture(),
            "config": {},
            "created": created,
            "history": [{"created": created, "comment": "Imported from -"}],
            "os": platform.system().lower(),
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        }
        return images.register(json.dumps(config, separators=(",", ":")).encode(), tags)


def save_images(refs: list[str], out_path: Path, fmt: str, images: ImageStore) -> None:
    """Write the images ``refs`` name to ``out_path`` in ``docker`` or ``oci`` format.

    A tag saves that tag; an ID saves the image untagged, as ``docker save`` does.
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown archive format '{fmt}'; choose {' or '.join(FORMATS)}")
    layers = images.layers
    tags: dict[str, list[str]] = {}
    chosen: list[Image] = []
    for ref in refs:
        image_id, tag = images.resolve_ref(ref)
        chosen.append(images.resolve(image_id))
        if tag is not None and tag not in tags.setdefault(image_id, []):
            tags[image_id].append(tag)
    partial = out_path.with_name(f".{out_path.name}.{os.getpid()}.part")
    with layers.leasing() as lease:
        saved = []
        for image in unique(chosen):
            chains = image.chain_ids
            layers.hold(lease, chains)
            saved.append(
                SavedImage(
                    id=image.id,
                    config=image.config,
                    tags=tuple(tags.get(image.id, [])),
                    layers=tuple(
                        SavedLayer(chain, diff_id, layers.tar_source(chain))
                        for chain, diff_id in zip(chains, image.diff_ids, strict=True)
                    ),
                )
            )
        writer = docker_archive.write if fmt == "docker" else oci_archive.write
        try:
            with open(partial, "wb") as out:
                writer(out, saved)
            os.replace(partial, out_path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
