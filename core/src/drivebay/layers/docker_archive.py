"""The ``docker save`` layout (Docker 1.10 to 24): ``manifest.json``, ``repositories``, ``<config>.json``,
``<v1 id>/{VERSION,json,layer.tar}``.

``docker load`` reads only ``manifest.json`` and the files it names; the v1
directories are kept for older tools. Their IDs are derived from the chain
IDs, so the same layers always get the same directory names.
"""

from __future__ import annotations

import json
import posixpath
from typing import Any, BinaryIO

from drivebay.errors import DigestMismatch, InvalidArchive
from drivebay.layers.image_archive import (
    ArchiveFile,
    ArchiveImage,
    LayerBlob,
    SavedImage,
    add_bytes,
    add_dir,
    add_tar,
    writing_archive,
)
from drivebay.layers.store import digest_hex, sha256_digest


def read_images(arc: ArchiveFile) -> list[ArchiveImage]:
    """The images listed in ``manifest.json``, with each config checked against its file name."""
    try:
        manifest = json.loads(arc.read("manifest.json"))
        entries = [(e["Config"], e.get("RepoTags") or [], e["Layers"]) for e in manifest]
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidArchive(f"{arc.label}: manifest.json is not valid ({exc}); save the image again") from exc
    images = []
    for index, (config_name, tags, layer_names) in enumerate(entries):
        source = f"{arc.label}, image {index + 1} ({', '.join(tags) or config_name})"
        config = arc.read(config_name)
        named = posixpath.basename(config_name).removesuffix(".json")
        if len(named) == 64 and sha256_digest(config) != f"sha256:{named}":
            raise DigestMismatch(
                f"{source}: config {config_name} hashes to {sha256_digest(config)}; the archive is corrupt"
            )
        layers = tuple(LayerBlob(member=name, digest=None, size=arc.size(name)) for name in layer_names)
        images.append(ArchiveImage(config=config, tags=tuple(tags), layers=layers, source=source))
    return images


def _v1_id(parent: str | None, chain: str) -> str:
    return digest_hex(sha256_digest(f"{parent or ''} {chain}".encode()))


def write(out: BinaryIO, images: list[SavedImage]) -> None:
    """Write ``images`` (with their tags) as a tarball that ``docker load`` accepts."""
    manifest: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    written: set[str] = set()
    with writing_archive(out) as tar:
        for image in images:
            layer_paths = []
            parent = None
            for layer in image.layers:
                v1 = _v1_id(parent, layer.chain_id)
                if v1 not in written:
                    written.add(v1)
                    add_dir(tar, f"{v1}/")
                    add_bytes(tar, f"{v1}/VERSION", b"1.0")
                    v1_json = {"id": v1, "parent": parent} if parent else {"id": v1}
                    add_bytes(tar, f"{v1}/json", json.dumps(v1_json).encode())
                    add_tar(tar, f"{v1}/layer.tar", layer.tar)
                layer_paths.append(f"{v1}/layer.tar")
                parent = v1
            config_name = f"{digest_hex(image.id)}.json"
            if config_name not in written:
                written.add(config_name)
                add_bytes(tar, config_name, image.config)
            manifest.append({"Config": config_name, "RepoTags": list(image.tags) or None, "Layers": layer_paths})
            for tag in image.tags:
                repo, _, name = tag.rpartition(":")
                if parent is not None:
                    repositories.setdefault(repo, {})[name] = parent
        add_bytes(tar, "manifest.json", json.dumps(manifest, separators=(",", ":")).encode())
        add_bytes(tar, "repositories", json.dumps(repositories, separators=(",", ":")).encode())
