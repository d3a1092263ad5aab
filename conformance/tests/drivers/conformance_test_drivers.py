"""Two copy-based graph drivers for testing the suite itself: one correct, one deliberately broken.

Installed for a subprocess only (a dist-info on PYTHONPATH, see conftest.py),
never into the environment. ``cpcopy`` copies a parent with ``cp -a``, which
keeps owners, modes, xattrs, hardlinks, special files and nanosecond times, so
it must pass every case it declares. ``broken`` copies with
``shutil.copytree``, which drops owners and hardlink identity, so "a child
sees its parent exactly" must fail and say where.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from drivebay import hookimpl
from drivebay.errors import LayerNotFound, QuotaNotSupported
from drivebay.hookspecs.graph import GraphCapabilities


class CpCopyDriver:
    """Each layer is a directory holding a full copy of its parent."""

    name = "cpcopy"

    def __init__(self) -> None:
        self.home = Path()

    def _dir(self, layer_id: str) -> Path:
        return self.home / "layers" / layer_id

    def copy(self, source: Path, target: Path) -> None:
        subprocess.run(["cp", "-a", "--reflink=auto", str(source), str(target)], check=True)

    @hookimpl
    def graph_capabilities(self) -> GraphCapabilities:
        return GraphCapabilities(native_diff=False, quota=False, max_depth=200)

    @hookimpl
    def graph_probe(self, home: Path) -> str | None:
        return None

    @hookimpl
    def graph_init(self, home: Path, options: Mapping[str, str]) -> None:
        self.home = home
        (home / "layers").mkdir(parents=True, exist_ok=True)

    def _create(self, layer_id: str, parent: str | None, storage_opts: Mapping[str, str]) -> None:
        if storage_opts:
            raise QuotaNotSupported(f"storage driver '{self.name}' cannot limit sizes")
        if parent is None:
            self._dir(layer_id).mkdir(mode=0o755)
        else:
            self.copy(self._dir(parent), self._dir(layer_id))

    @hookimpl
    def graph_create(self, layer_id: str, parent: str | None, storage_opts: Mapping[str, str]) -> None:
        self._create(layer_id, parent, storage_opts)

    @hookimpl
    def graph_create_rw(self, layer_id: str, parent: str | None, storage_opts: Mapping[str, str]) -> None:
        self._create(layer_id, parent, storage_opts)

    @hookimpl
    def graph_remove(self, layer_id: str) -> None:
        if not self._dir(layer_id).exists():
            raise LayerNotFound(f"{self.name} driver has no layer '{layer_id}'")
        shutil.rmtree(self._dir(layer_id))

    @hookimpl
    def graph_get(self, layer_id: str) -> Path:
        if not self._dir(layer_id).exists():
            raise LayerNotFound(f"{self.name} driver has no layer '{layer_id}'")
        return self._dir(layer_id)

    @hookimpl
    def graph_put(self, layer_id: str) -> None:
        """Nothing is mounted."""

    @hookimpl
    def graph_exists(self, layer_id: str) -> bool:
        return self._dir(layer_id).is_dir()

    @hookimpl
    def graph_status(self) -> list[tuple[str, str]]:
        return [("Layers", str(len(list((self.home / "layers").iterdir()))))]

    @hookimpl
    def graph_metadata(self, layer_id: str) -> dict[str, str]:
        return {"dir": str(self.graph_get(layer_id))}

    @hookimpl
    def graph_cleanup(self) -> None:
        """Nothing is mounted."""


class BrokenCopyDriver(CpCopyDriver):
    """Copies with shutil.copytree: owners become root's and hardlinks become separate files."""

    name = "broken"

    def copy(self, source: Path, target: Path) -> None:
        shutil.copytree(source, target, symlinks=True)
