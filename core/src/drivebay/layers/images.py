"""Images: a config, the ordered layers it names, tags and history (moby's image store).

An image is identified by the sha256 of its config bytes, which are kept
exactly as loaded (in ``drivebay.db``) so that the ID and ``image save`` stay
byte-identical. The layers are the config's ``rootfs.diff_ids``; the image
holds its top layer by chain ID, and the top layer holds the rest.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from drivebay.errors import ImageInUse, ImageNotFound, InvalidArchive, LayerNotFound, UsageError
from drivebay.layers.store import Layer, LayerStore, chain_ids, digest_hex, sha256_digest
from drivebay.state import StateDB

# Patterns, compiled (and cached) by re on first use: listing images never parses a reference.
_NAME = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"


def normalize_ref(ref: str) -> str:
    """``busybox`` -> ``busybox:latest``; refuse what Docker would not accept as ``NAME[:TAG]``."""
    name, tag = ref, "latest"
    slash, colon = ref.rfind("/"), ref.rfind(":")
    if colon > slash:
        name, tag = ref[:colon], ref[colon + 1 :]
    parts = name.split("/")
    first_is_domain = len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost")
    path_parts = parts[1:] if first_is_domain else parts
    valid = (
        bool(name)
        and re.fullmatch(_TAG, tag) is not None
        and (not first_is_domain or re.fullmatch(_DOMAIN, parts[0]) is not None)
        and all(re.fullmatch(_NAME, p) for p in path_parts)
    )
    if not valid:
        raise UsageError(
            f"invalid image reference '{ref}': use NAME[:TAG] with a lowercase name (a-z, 0-9, '.', '_', '-', '/') "
            "and a tag of letters, digits, '_', '.' or '-'"
        )
    return f"{name}:{tag}"


def parse_config(config: bytes, what: str) -> dict[str, Any]:
    """The image config as a dict, checked to have ``rootfs.diff_ids``."""
    try:
        parsed = json.loads(config)
        diff_ids = parsed["rootfs"]["diff_ids"]
        if not isinstance(diff_ids, list):
            raise TypeError("rootfs.diff_ids is not a list")
        for diff_id in diff_ids:
            digest_hex(diff_id)
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidArchive(f"{what}: image config is not valid ({exc}); the archive is corrupt") from exc
    if not isinstance(parsed, dict):
        raise InvalidArchive(f"{what}: image config is not a JSON object; the archive is corrupt")
    return parsed


@dataclass(frozen=True)
class Image:
    """A registered image."""

    id: str
    config: bytes
    top_chain: str | None
    created: float
    tags: tuple[str, ...]

    @property
    def parsed(self) -> dict[str, Any]:
        return parse_config(self.config, f"image {self.id}")

    @property
    def diff_ids(self) -> list[str]:
        return list(self.parsed["rootfs"]["diff_ids"])

    @property
    def chain_ids(self) -> list[str]:
        return chain_ids(self.diff_ids)

    @property
    def short_id(self) -> str:
        return digest_hex(self.id)[:12]


@dataclass(frozen=True)
class HistoryEntry:
    """One line of ``image history``: newest first, ``image_id`` only on the top entry."""

    image_id: str | None
    created: str
    created_by: str
    size: int
    comment: str
    empty_layer: bool


class ImageStore:
    """Images of one root."""

    def __init__(self, state: StateDB, layers: LayerStore) -> None:
        self.state = state
        self.layers = layers

    def _image(self, image_id: str) -> Image:
        rows = self.state.query("SELECT * FROM layerstore_images WHERE id=?", (image_id,))
        if not rows:
            raise ImageNotFound(f"no image with ID {image_id}; see 'drivebay image ls'")
        tags = tuple(
            str(r["ref"])
            for r in self.state.query("SELECT ref FROM layerstore_tags WHERE image_id=? ORDER BY ref", (image_id,))
        )
        row = rows[0]
        return Image(
            id=str(row["id"]),
            config=bytes(row["config"]),
            top_chain=str(row["top_chain"]) if row["top_chain"] is not None else None,
            created=float(row["created"]),
            tags=tags,
        )

    def images(self) -> list[Image]:
        rows = self.state.query("SELECT id FROM layerstore_images ORDER BY created DESC, id")
        return [self._image(str(r["id"])) for r in rows]

    def register(self, config: bytes, tags: Sequence[str], what: str = "image") -> Image:
        """Record an image whose layers are all in the store; move ``tags`` to it. Idempotent."""
        image_id = sha256_digest(config)
        chains = chain_ids(parse_config(config, what)["rootfs"]["diff_ids"])
        top = chains[-1] if chains else None
        refs = [normalize_ref(tag) for tag in tags]
        with self.state.transaction() as db:
            for chain in chains:
                if self.layers.find(chain) is None:
                    raise LayerNotFound(f"{what}: layer {chain} is not in the store; load its layers first")
            db.execute(
                "INSERT OR IGNORE INTO layerstore_images VALUES (?, ?, ?, ?)", (image_id, config, top, time.time())
            )
            for ref in refs:
                db.execute("INSERT OR REPLACE INTO layerstore_tags VALUES (?, ?)", (ref, image_id))
        return self._image(image_id)

    def resolve(self, ref: str) -> Image:
        """The image a tag, a full ID or a unique ID prefix names."""
        return self._image(self.resolve_ref(ref)[0])

    def resolve_ref(self, ref: str) -> tuple[str, str | None]:
        """``(image ID, tag)``; the tag is ``None`` when ``ref`` named the ID."""
        hex_ref = ref.removeprefix("sha256:")
        if re.fullmatch(r"[0-9a-f]{4,64}", hex_ref):
            rows = self.state.query(
                "SELECT id FROM layerstore_images WHERE id >= ? AND id < ?", (f"sha256:{hex_ref}", f"sha256:{hex_ref}g")
            )
            if len(rows) == 1:
                return str(rows[0]["id"]), None
            if len(rows) > 1:
                raise UsageError(f"image ID prefix '{ref}' is ambiguous ({len(rows)} images); give more digits")
        if ref.startswith("sha256:"):
            raise ImageNotFound(f"no image with ID {ref}; see 'drivebay image ls'")
        tag = normalize_ref(ref)
        rows = self.state.query("SELECT image_id FROM layerstore_tags WHERE ref=?", (tag,))
        if not rows:
            raise ImageNotFound(
                f"no image named '{tag}'; see 'drivebay image ls' or load it with 'drivebay image load'"
            )
        return str(rows[0]["image_id"]), tag

    def containers_using(self, image_id: str) -> list[str]:
        rows = self.state.query("SELECT name FROM layerstore_containers WHERE image_id=? ORDER BY name", (image_id,))
        return [str(r["name"]) for r in rows]

    def remove(self, ref: str) -> list[str]:
        """Untag ``ref``, and delete the image when no tag is left (or ``ref`` is its ID).

        Returns ``docker rmi``-style lines (``Untagged: ...``, ``Deleted: ...``).
        Raises ``ImageInUse`` naming the containers that still use the image.
        """
        with self.state.transaction() as db:
            image_id, tag = self.resolve_ref(ref)
            image = self._image(image_id)
            untag = [tag] if tag is not None else list(image.tags)
            for name in untag:
                db.execute("DELETE FROM layerstore_tags WHERE ref=?", (name,))
            lines = [f"Untagged: {name}" for name in untag]
            if tag is not None and len(image.tags) > 1:
                return lines
            users = self.containers_using(image_id)
            if users:
                raise ImageInUse(
                    f"image '{ref}' ({image.short_id}) is used by container {', '.join(users)}; "
                    f"remove it first with 'drivebay container rm {users[0]}'"
                )
            db.execute("DELETE FROM layerstore_images WHERE id=?", (image_id,))
        lines.append(f"Deleted: {image_id}")
        if image.top_chain is not None:
            lines += [f"Deleted: {chain}" for chain in self.layers.collect([image.top_chain])]
        return lines

    def layer_chain(self, image: Image) -> list[Layer]:
        return self.layers.chain(image.top_chain)

    def size(self, image: Image) -> int:
        return sum(layer.size for layer in self.layer_chain(image))

    def history(self, image: Image) -> list[HistoryEntry]:
        """Like ``docker history``: one entry per config history item, newest first, with layer sizes."""
        layers = iter(self.layer_chain(image))
        entries = []
        for item in image.parsed.get("history") or []:
            empty = bool(item.get("empty_layer"))
            layer = None if empty else next(layers, None)
            entries.append(
                HistoryEntry(
                    image_id=None,
                    created=str(item.get("created", "")),
                    created_by=str(item.get("created_by", "")),
                    size=layer.size if layer is not None else 0,
                    comment=str(item.get("comment", "")),
                    empty_layer=empty,
                )
            )
        entries.reverse()
        if entries:
            top = entries[0]
            entries[0] = HistoryEntry(image.id, top.created, top.created_by, top.size, top.comment, top.empty_layer)
        return entries


def unique(images: Iterable[Image]) -> list[Image]:
    """``images`` without repeats, in order."""
    seen: dict[str, Image] = {}
    for image in images:
        seen.setdefault(image.id, image)
    return list(seen.values())
