"""moby's overlay2 layout under the driver's home.

```
l/<short id> -> ../<id>/diff    short names keep mount data small
<id>/diff/                      the layer's own files (the upper dir of its mount)
<id>/link                       its short id
<id>/lower                      "l/<short>:l/<short>...", nearest first; absent for a base layer
<id>/work/  <id>/merged/        overlay's work dir and the mount point
<id>/committed                  marks a read-only (image) layer, mounted read-only
```
"""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path
from typing import NamedTuple

from drivebay.errors import LayerNotFound

LINK_DIR = "l"
SHORT_ID_LENGTH = 26


def new_short_id() -> str:
    """26 random base32 characters, as moby's ``generateID``."""
    return base64.b32encode(os.urandom(20)).decode("ascii")[:SHORT_ID_LENGTH]


class MountFacts(NamedTuple):
    """What ``get`` needs to know of a layer before mounting it."""

    lower_text: str
    """The ``lower`` file: ``l/<short>:l/<short>...``, nearest first; empty for a base layer."""
    read_only: bool
    mounted: bool

    @property
    def lowers(self) -> tuple[str, ...]:
        return tuple(self.lower_text.split(":")) if self.lower_text else ()


_READ_SIZE = 1 << 16


def _read_small_file(path: str) -> str:
    """The file's text in as few system calls as can be: a regular file reads short only at its end."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = [os.read(fd, _READ_SIZE)]
        while len(chunks[-1]) == _READ_SIZE:
            chunks.append(os.read(fd, _READ_SIZE))
    finally:
        os.close(fd)
    return b"".join(chunks).decode("ascii")


class Overlay2Layout:
    """Paths and the small files of moby's layout; no mounting."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.links = home / LINK_DIR
        self._merged: dict[str, Path] = {}

    def make_dirs(self) -> None:
        self.links.mkdir(mode=0o700, parents=True, exist_ok=True)

    def dir(self, layer_id: str) -> Path:
        return self.home / layer_id

    def diff(self, layer_id: str) -> Path:
        return self.home / layer_id / "diff"

    def work(self, layer_id: str) -> Path:
        return self.home / layer_id / "work"

    def merged(self, layer_id: str) -> Path:
        # Kept: get returns it each time, and pathlib's joins cost more than get's own checks.
        path = self._merged.get(layer_id)
        if path is None:
            path = self._merged[layer_id] = self.home / layer_id / "merged"
        return path

    def committed_marker(self, layer_id: str) -> Path:
        return self.home / layer_id / "committed"

    def exists(self, layer_id: str) -> bool:
        return (self.home / layer_id / "link").is_file() and self.diff(layer_id).is_dir()

    def _not_found(self, layer_id: str) -> LayerNotFound:
        return LayerNotFound(f"overlay2 has no layer '{layer_id}' under {self.home}")

    def require(self, layer_id: str) -> None:
        if not self.exists(layer_id):
            raise self._not_found(layer_id)

    def is_read_only(self, layer_id: str) -> bool:
        return self.committed_marker(layer_id).exists()

    def short_id(self, layer_id: str) -> str:
        return (self.home / layer_id / "link").read_text(encoding="ascii").strip()

    def lowers(self, layer_id: str) -> list[str]:
        """The ``l/<short>`` entries below the layer, nearest first; empty for a base layer."""
        try:
            text = (self.home / layer_id / "lower").read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return []
        return text.split(":") if text else []

    def mount_facts(self, layer_id: str) -> MountFacts:
        """The layer's lowers, whether it is read-only and whether mounted: ``get``'s hot path, six system calls.

        Raises ``LayerNotFound`` when the layer has no ``link`` file; a missing
        ``diff/`` shows when it is mounted. Paths are plain strings here
        because pathlib's joins would cost more than the system calls.
        """
        layer_dir = f"{self.home}/{layer_id}"
        try:
            link = os.stat(f"{layer_dir}/link")
        except FileNotFoundError as exc:
            raise self._not_found(layer_id) from exc
        if not stat.S_ISREG(link.st_mode):
            raise self._not_found(layer_id)
        try:
            text = _read_small_file(f"{layer_dir}/lower").strip()
        except FileNotFoundError:
            text = ""
        return MountFacts(
            lower_text=text,
            read_only=os.access(f"{layer_dir}/committed", os.F_OK),
            # A mount point's device differs from its directory's, where ``link`` sits: no mount table scan.
            mounted=os.stat(f"{layer_dir}/merged").st_dev != link.st_dev,
        )

    def layer_of_link(self, entry: str) -> str:
        """The layer ID an ``l/<short>`` entry points at (its target is ``../<id>/diff``)."""
        return Path(os.readlink(self.home / entry)).parent.name

    def parent(self, layer_id: str) -> str | None:
        lowers = self.lowers(layer_id)
        return self.layer_of_link(lowers[0]) if lowers else None

    def create(self, layer_id: str, parent: str | None, read_only: bool) -> None:
        """Make the layer's directories and files; ``diff/`` may already exist (a quota subvolume)."""
        layer_dir = self.dir(layer_id)
        layer_dir.mkdir(mode=0o700, exist_ok=True)
        self.diff(layer_id).mkdir(mode=0o755, exist_ok=True)
        self.work(layer_id).mkdir(mode=0o700)
        self.merged(layer_id).mkdir(mode=0o700)
        if parent is not None:
            chain = [f"{LINK_DIR}/{self.short_id(parent)}", *self.lowers(parent)]
            (layer_dir / "lower").write_text(":".join(chain), encoding="ascii")
        if read_only:
            self.committed_marker(layer_id).touch()
        short = new_short_id()
        # link first: unlink() finds the l/ symlink through it, so a crash in between leaves nothing behind.
        (layer_dir / "link").write_text(short, encoding="ascii")
        (self.links / short).symlink_to(f"../{layer_id}/diff")

    def unlink(self, layer_id: str) -> None:
        """Drop the layer's short link and ``link`` file, so it no longer exists; the directory stays."""
        self._merged.pop(layer_id, None)
        link_file = self.home / layer_id / "link"
        if link_file.exists():
            (self.links / self.short_id(layer_id)).unlink(missing_ok=True)
            link_file.unlink()
