"""moby's aufs on-disk layout under the driver home.

- ``layers/<id>``: the ancestors of ``<id>``, one per line, nearest first.
- ``diff/<id>``: the branch directory holding the layer's own files and
  ``.wh.`` whiteouts.
- ``mnt/<id>``: the union mount point.
- ``work/<id>``: fuse-overlayfs's work directory (the kernel path has none).
- ``rw/<id>``: present for read-write (container) layers.
- ``dirty/<id>``: present while a read-write union is mounted, so that a
  crash is noticed and the branch normalised at the next start.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class AufsLayout:
    home: Path

    def layers_file(self, layer_id: str) -> Path:
        return self.home / "layers" / layer_id

    def diff(self, layer_id: str) -> Path:
        return self.home / "diff" / layer_id

    def mnt(self, layer_id: str) -> Path:
        return self.home / "mnt" / layer_id

    def work(self, layer_id: str) -> Path:
        return self.home / "work" / layer_id

    def rw_marker(self, layer_id: str) -> Path:
        return self.home / "rw" / layer_id

    def dirty_marker(self, layer_id: str) -> Path:
        return self.home / "dirty" / layer_id

    def make_dirs(self) -> None:
        for sub in ("layers", "diff", "mnt", "work", "rw", "dirty"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)

    def ancestors(self, layer_id: str) -> list[str]:
        text = self.layers_file(layer_id).read_text(encoding="utf-8")
        return [line for line in text.splitlines() if line]

    def write_ancestors(self, layer_id: str, ancestors: list[str]) -> None:
        """Write ``layers/<id>`` atomically: a crash leaves the old file or the new one."""
        target = self.layers_file(layer_id)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{layer_id}.")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("".join(f"{a}\n" for a in ancestors))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)

    def dirty_layers(self) -> list[str]:
        return sorted(p.name for p in (self.home / "dirty").iterdir())
