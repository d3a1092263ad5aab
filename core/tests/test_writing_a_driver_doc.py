"""The minimal driver printed in docs/writing-a-driver.md installs and works, exactly as printed."""

from __future__ import annotations

import importlib
import io
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from stevedore.extension import ExtensionManager

from drivebay.errors import DriverContractError
from drivebay.facades.graph import GraphDriver
from drivebay.loader import KINDS, installed_drivers, load_driver
from drivebay.state import StateDB
from drivebay.testing.tars import layer_tar

DOC = Path(__file__).resolve().parents[2] / "docs" / "writing-a-driver.md"


def _doc_driver_source() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    return next(b for b in blocks if "class CopyDriver" in b)


def _install(site: Path, source: str, dist: str = "drivebay_graphdriver_copy") -> None:
    package = site / dist
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "driver.py").write_text(source)
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist.replace('_', '-')}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[drivebay.graphdrivers]\ncopy = {dist}.driver:CopyDriver\n")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    site = tmp_path / "site"
    site.mkdir()
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    # stevedore caches each group's entry points per process; a real install happens between processes.
    ExtensionManager.ENTRY_POINT_CACHE.pop(KINDS["graph"].group, None)
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        ExtensionManager.ENTRY_POINT_CACHE.pop(KINDS["graph"].group, None)
        for name in [m for m in sys.modules if m.startswith("drivebay_graphdriver_copy")]:
            del sys.modules[name]


def test_documented_driver_installs_and_stores_layers(site: Path, tmp_path: Path) -> None:
    _install(site, _doc_driver_source())
    assert "copy" in [d.name for d in installed_drivers(KINDS["graph"])]
    root = tmp_path / "root"
    driver = GraphDriver(load_driver(KINDS["graph"], "copy"), root / "copy", StateDB.for_root(root), {})
    driver.create_from_tar("base", None, io.BytesIO(layer_tar({"hello": b"hi\n", "gone": b"x"})))
    driver.create_rw("child", "base")
    with driver.mounted("child") as view:
        assert (view / "hello").read_text() == "hi\n"
        (view / "gone").unlink()
        (view / "new").write_text("new\n")
    assert [str(c) for c in driver.changes("child")] == ["D /gone", "A /new"]


def test_documented_error_for_a_missing_hook(site: Path) -> None:
    source = _doc_driver_source().replace("    def graph_exists(", "    def _unused_exists(")
    _install(site, source)
    with pytest.raises(DriverContractError) as caught:
        load_driver(KINDS["graph"], "copy")
    message = f"drivebay: {caught.value}"
    assert message in DOC.read_text(encoding="utf-8")
