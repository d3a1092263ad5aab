"""The OCI image layout as a tarball: ``oci-layout``, ``index.json``, ``blobs/sha256/...``.

Reading follows ``index.json`` (through nested indexes, choosing this host's
platform) to each manifest, checking every blob's digest and size. Writing
produces what Docker 25 writes: the OCI layout with uncompressed layer blobs,
``io.containerd.image.name`` and ``org.opencontainers.image.ref.name``
annotations, plus a ``manifest.json`` so that older ``docker load`` accepts it.
"""

from __future__ import annotations

import json
import platform
from typing import Any, BinaryIO

from drivebay.errors import DigestMismatch, InvalidArchive
from drivebay.layers.image_archive import (
    ArchiveFile,
    ArchiveImage,
    LayerBlob,
    SavedImage,
    TarSource,
    add_bytes,
    add_dir,
    add_tar,
    writing_archive,
)
from drivebay.layers.store import digest_hex, sha256_digest

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
INDEXES = (MEDIA_INDEX, "application/vnd.docker.distribution.manifest.list.v2+json")
MANIFESTS = (MEDIA_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json")
NAME_ANNOTATION = "io.containerd.image.name"
REF_ANNOTATION = "org.opencontainers.image.ref.name"
HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


def host_architecture() -> str:
    machine = platform.machine()
    return HOST_ARCH.get(machine, machine)


def _blob_path(digest: str) -> str:
    return f"blobs/sha256/{digest_hex(digest)}"


def _read_blob(arc: ArchiveFile, descriptor: dict[str, Any], what: str) -> bytes:
    digest = str(descriptor["digest"])
    data = arc.read(_blob_path(digest))
    if sha256_digest(data) != digest or ("size" in descriptor and len(data) != int(descriptor["size"])):
        raise DigestMismatch(
            f"{arc.label}: {what} blob {digest} has {len(data)} bytes hashing to {sha256_digest(data)}; "
            "the archive is corrupt, save it again"
        )
    return data


def _tag_of(annotations: dict[str, str]) -> str | None:
    name = annotations.get(NAME_ANNOTATION) or annotations.get(REF_ANNOTATION)
    # A bare ref.name ("latest", as Docker 25 writes it) is only a tag; without the repository it names nothing.
    if name and (":" in name or "/" in name):
        return name
    return None


def _pick_platform(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    native = [
        m
        for m in manifests
        if m.get("platform", {}).get("os", "linux") == "linux"
        and m.get("platform", {}).get("architecture", host_architecture()) == host_architecture()
    ]
    return native[:1] or manifests[:1]


Descriptor = dict[str, Any]


def _manifest_descriptors(arc: ArchiveFile, index: Descriptor, depth: int = 0) -> list[tuple[Descriptor, str | None]]:
    """Each image manifest descriptor ``index`` leads to, with its tag (nested indexes: this platform's)."""
    found: list[tuple[Descriptor, str | None]] = []
    for descriptor in index.get("manifests") or []:
        media = descriptor.get("mediaType", MEDIA_MANIFEST)
        tag = _tag_of(descriptor.get("annotations") or {})
        if media in INDEXES and depth < 4:
            nested = json.loads(_read_blob(arc, descriptor, "index"))
            chosen = {"manifests": _pick_platform(nested["manifests"])}
            found += [(inner, inner_tag or tag) for inner, inner_tag in _manifest_descriptors(arc, chosen, depth + 1)]
        elif media in MANIFESTS:
            found.append((descriptor, tag))
    return found


def read_images(arc: ArchiveFile) -> list[ArchiveImage]:
    """Every image ``index.json`` leads to, tags merged per manifest."""
    try:
        index = json.loads(arc.read("index.json"))
        by_digest: dict[str, tuple[dict[str, Any], list[str]]] = {}
        for descriptor, tag in _manifest_descriptors(arc, index):
            entry = by_digest.setdefault(str(descriptor["digest"]), (descriptor, []))
            if tag is not None and tag not in entry[1]:
                entry[1].append(tag)
        images = []
        for digest, (descriptor, tags) in by_digest.items():
            source = f"{arc.label}, manifest {digest} ({', '.join(tags) or 'untagged'})"
            manifest = json.loads(_read_blob(arc, descriptor, "manifest"))
            config = _read_blob(arc, manifest["config"], "config")
            layers = tuple(
                LayerBlob(member=_blob_path(str(d["digest"])), digest=str(d["digest"]), size=int(d["size"]))
                for d in manifest["layers"]
            )
            images.append(ArchiveImage(config=config, tags=tuple(tags), layers=layers, source=source))
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidArchive(f"{arc.label}: OCI index or manifest is not valid ({exc}); save the image again") from exc
    if not images:
        raise InvalidArchive(f"{arc.label}: index.json lists no image manifest for this platform")
    return images


def _descriptor(media: str, digest: str, size: int) -> dict[str, Any]:
    return {"mediaType": media, "digest": digest, "size": size}


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def write(out: BinaryIO, images: list[SavedImage]) -> None:
    """Write ``images`` as an OCI layout tarball (plus ``manifest.json`` for ``docker load``)."""
    index: list[dict[str, Any]] = []
    docker_manifest: list[dict[str, Any]] = []
    written: set[str] = set()
    with writing_archive(out) as tar:
        add_bytes(tar, "oci-layout", _json({"imageLayoutVersion": "1.0.0"}))
        add_dir(tar, "blobs/")
        add_dir(tar, "blobs/sha256/")

        def blob(digest: str, data: bytes | None = None, layer: TarSource | None = None) -> None:
            if digest in written:
                return
            written.add(digest)
            if data is not None:
                add_bytes(tar, _blob_path(digest), data)
            elif layer is not None:
                add_tar(tar, _blob_path(digest), layer)

        for image in images:
            blob(image.id, image.config)
            layers = []
            for layer in image.layers:
                blob(layer.diff_id, layer=layer.tar)
                layers.append(_descriptor(MEDIA_LAYER, layer.diff_id, layer.tar.size))
            manifest = _json(
                {
                    "schemaVersion": 2,
                    "mediaType": MEDIA_MANIFEST,
                    "config": _descriptor(MEDIA_CONFIG, image.id, len(image.config)),
                    "layers": layers,
                }
            )
            manifest_digest = sha256_digest(manifest)
            blob(manifest_digest, manifest)
            for tag in image.tags or (None,):
                entry = _descriptor(MEDIA_MANIFEST, manifest_digest, len(manifest))
                if tag is not None:
                    entry["annotations"] = {NAME_ANNOTATION: tag, REF_ANNOTATION: tag.rpartition(":")[2]}
                index.append(entry)
            docker_manifest.append(
                {
                    "Config": _blob_path(image.id),
                    "RepoTags": list(image.tags) or None,
                    "Layers": [_blob_path(layer.diff_id) for layer in image.layers],
                }
            )
        add_bytes(tar, "index.json", _json({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": index}))
        add_bytes(tar, "manifest.json", _json(docker_manifest))
