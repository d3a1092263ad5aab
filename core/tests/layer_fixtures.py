"""Helpers for the layer store, image and container tests: stores on a temporary root, the CLI, and
image archives built from generated layers (with whiteouts and opaque directories).

Imported by ``test_layers_*.py``, ``test_images_*.py``, ``test_containers_*.py`` and ``test_cli_image*.py``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import zstandard

from drivebay.facades.graph import GraphDriver
from drivebay.fs.loopfs import can_make, scratch_filesystem
from drivebay.fs.mounts import unmount_all_under
from drivebay.layers import Stores, open_stores
from drivebay.loader import KINDS, installed_drivers, load_driver
from drivebay.state import StateDB

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
BASIC_DIFF_IDS = [
    "sha256:d44f8dd9a08060cb4cd31d42714d8ab731f34a60b3122d76ca0493c778b56197",
    "sha256:b9c08b9b93eef925a2be9bc788c7270593a5fd6c82c3f85ab1beb93766cc9680",
    "sha256:4331aee19818f3b9cb9b94aff38b06a60d6b4794ac27aaa5892fca85d22599e4",
]
BASIC_IMAGE_ID = "sha256:1713546230194b70004483f4f6a85f1742f0efe1c4039043f52181873f47e5e9"
BASIC_TAG = "drivebay-fixture/basic:1"
INIT_ARTIFACTS = (
    "/.dockerenv",
    "/dev",
    "/dev/console",
    "/dev/pts",
    "/dev/shm",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/mtab",
    "/etc/resolv.conf",
    "/proc",
    "/sys",
)
MTIME = 1_795_429_638

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mounts, chown, device nodes)")


def fixture(name: str) -> Path:
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"Docker fixture {path} is absent (set A of ../shared/fixtures)")
    return path


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- graph drivers and stores ----------------------------------------------------


def supported_graph_drivers() -> list[str]:
    """Installed graph drivers, for parametrizing; unsupported ones skip in :func:`open_graph`."""
    return [d.name for d in installed_drivers(KINDS["graph"])] or ["vfs"]


def open_graph(root: Path, name: str) -> GraphDriver:
    """The facade of driver ``name`` with its home under ``root``; skips when the host lacks the driver."""
    if name not in {d.name for d in installed_drivers(KINDS["graph"])}:
        pytest.skip(f"graph driver '{name}' is not installed")
    loaded = load_driver(KINDS["graph"], name)
    reason = loaded.hook.graph_probe(home=root / name)
    if reason is not None:
        pytest.skip(f"graph driver '{name}' is not supported here: {reason}")
    return GraphDriver(loaded, home=root / name, state=StateDB.for_root(root), options={})


@contextmanager
def root_for_driver(tmp_path: Path, name: str) -> Iterator[Path]:
    """A root for driver ``name``: ``tmp_path/root``, or on a scratch filesystem of the type it requires."""
    if name not in {d.name for d in installed_drivers(KINDS["graph"])}:
        pytest.skip(f"graph driver '{name}' is not installed")
    required = load_driver(KINDS["graph"], name).hook.graph_capabilities().required_filesystem
    if required is None:
        yield tmp_path / "root"
        return
    reason = can_make(required)
    if reason is not None:
        pytest.skip(f"graph driver '{name}' needs {required}, which cannot be made here: {reason}")
    with scratch_filesystem(required, size_mb=1024, parent=tmp_path) as mount_point:
        yield mount_point / "root"


@contextmanager
def opened_stores(root: Path, driver: str = "vfs") -> Iterator[Stores]:
    """The layer, image and container stores of ``root``; everything unmounted afterwards."""
    graph = open_graph(root, driver)
    try:
        yield open_stores(root, graph.state, graph)
    finally:
        graph.cleanup()
        unmount_all_under(root)
        graph.state.close()


EMPTY_STORE: dict[str, list[str]] = {
    "layers": [],
    "images": [],
    "containers": [],
    "graph": [],
    "layerdb": [],
    "tmp": [],
}
"""What :func:`store_snapshot` shows of a store that holds nothing."""


def stored_tar(stores: Stores, chain: str) -> bytes:
    """The original tar of layer ``chain`` as ``image save`` writes it (rebuilt from a tar-split or read whole)."""
    with stores.layers.tar_source(chain).open() as tar:
        return tar.read()


def store_snapshot(root: Path, stores: Stores) -> dict[str, object]:
    """What a user could see of the store: layers, images, containers, graph layers, files."""
    return {
        "layers": sorted(layer.chain_id for layer in stores.layers.layers()),
        "images": sorted(image.id for image in stores.images.images()),
        "containers": sorted(c.name for c in stores.containers.containers()),
        "graph": sorted(stores.layers.graph.layers()),
        "layerdb": sorted(p.name for p in (root / "layerdb" / "sha256").iterdir()),
        "tmp": sorted(p.name for p in (root / "layerdb" / "tmp").iterdir()),
    }


# -- the CLI ----------------------------------------------------------------------


def run_cli(
    root: Path, driver: str, *args: str | Path, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """``drivebay --root ROOT -s DRIVER ARGS...`` in a subprocess."""
    command = [sys.executable, "-m", "drivebay.cli.main", "--root", str(root), "-s", driver, *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {result.returncode}: {result.stderr}")
    return result


# -- generated layers and archives --------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One tar entry of a generated layer: ``kind`` is file, dir, symlink, hardlink or whiteout."""

    name: str
    kind: str = "file"
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    target: str = ""


def layer_tar(entries: Sequence[Entry]) -> bytes:
    """A layer tar in the OCI format (USTAR, names without ``./``), same bytes every call."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.mtime = MTIME
            info.mode = entry.mode
            info.uid, info.gid = entry.uid, entry.gid
            data = None
            if entry.kind == "dir":
                info.type = tarfile.DIRTYPE
            elif entry.kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, entry.target
            elif entry.kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, entry.target
            else:
                info.size = len(entry.data)
                data = io.BytesIO(entry.data)
            tar.addfile(info, data)
    return out.getvalue()


BASE_LAYER = [
    Entry("etc/", "dir", mode=0o755),
    Entry("etc/motd", data=b"welcome\n"),
    Entry("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\n"),
    Entry("opt/", "dir", mode=0o755),
    Entry("opt/app/", "dir", mode=0o755),
    Entry("opt/app/old.txt", data=b"old\n"),
    Entry("opt/app/keep.txt", data=b"keep\n"),
    Entry("usr/", "dir", mode=0o755),
    Entry("usr/share/", "dir", mode=0o755),
    Entry("usr/share/doc/", "dir", mode=0o755),
    Entry("usr/share/doc/readme", data=b"doc\n"),
    Entry("var/", "dir", mode=0o755),
    Entry("var/data", data=b"x" * 5000, uid=1000, gid=1000),
]
WHITEOUT_LAYER = [
    Entry("etc/", "dir", mode=0o755),
    Entry("etc/.wh.motd", mode=0o600),
    Entry("opt/", "dir", mode=0o755),
    Entry("opt/app/", "dir", mode=0o755),
    Entry("opt/app/.wh..wh..opq", mode=0o755),
    Entry("opt/app/new.txt", data=b"new\n"),
    Entry("opt/setuid", data=b"s\n", mode=0o4755),
    Entry("opt/link", "symlink", mode=0o777, target="app/new.txt"),
    Entry("opt/hard", "hardlink", target="opt/setuid"),
    Entry("usr/", "dir", mode=0o755),
    Entry("usr/share/", "dir", mode=0o755),
    Entry("usr/share/.wh.doc", mode=0o600),
]


@dataclass
class ImageSpec:
    """An image to write into a generated archive."""

    tags: list[str]
    layers: list[bytes]
    history: list[str] = field(default_factory=list)

    def config(self) -> bytes:
        history = [{"created": "2026-11-23T10:00:00Z", "created_by": text} for text in self.history] or [
            {"created": "2026-11-23T10:00:00Z", "created_by": f"layer {n}"} for n in range(len(self.layers))
        ]
        return json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "created": "2026-11-23T10:00:00Z",
                "config": {"Cmd": ["/bin/sh"]},
                "history": history,
                "rootfs": {"type": "layers", "diff_ids": [sha256(layer) for layer in self.layers]},
            }
        ).encode()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = MTIME
    tar.addfile(info, io.BytesIO(data))


def write_docker_archive(path: Path, images: Sequence[ImageSpec]) -> Path:
    """A ``docker save`` (legacy layout) archive of ``images``."""
    manifest = []
    with tarfile.open(path, "w") as tar:
        written: set[str] = set()
        for image in images:
            config = image.config()
            config_name = sha256(config).removeprefix("sha256:") + ".json"
            _add(tar, config_name, config)
            names = []
            for layer in image.layers:
                v1 = sha256(layer).removeprefix("sha256:")
                if v1 not in written:
                    written.add(v1)
                    _add(tar, f"{v1}/VERSION", b"1.0")
                    _add(tar, f"{v1}/json", json.dumps({"id": v1}).encode())
                    _add(tar, f"{v1}/layer.tar", layer)
                names.append(f"{v1}/layer.tar")
            manifest.append({"Config": config_name, "RepoTags": image.tags, "Layers": names})
        _add(tar, "manifest.json", json.dumps(manifest).encode())
    return path


def compress(data: bytes, how: str) -> bytes:
    if how == "gzip":
        return gzip.compress(data, mtime=0)
    if how == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


def write_oci_archive(path: Path, images: Sequence[ImageSpec], compression: str = "gzip") -> Path:
    """An OCI layout archive of ``images`` with layer blobs compressed by ``compression``."""
    media = {"gzip": "+gzip", "zstd": "+zstd", "none": ""}[compression]
    index = []
    with tarfile.open(path, "w") as tar:
        _add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        written: set[str] = set()

        def blob(data: bytes) -> dict[str, object]:
            digest = sha256(data)
            if digest not in written:
                written.add(digest)
                _add(tar, f"blobs/sha256/{digest.removeprefix('sha256:')}", data)
            return {"digest": digest, "size": len(data)}

        for image in images:
            layers = [
                {"mediaType": f"application/vnd.oci.image.layer.v1.tar{media}", **blob(compress(layer, compression))}
                for layer in image.layers
            ]
            config = {"mediaType": "application/vnd.oci.image.config.v1+json", **blob(image.config())}
            manifest = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": config,
                    "layers": layers,
                }
            ).encode()
            for tag in image.tags:
                index.append(
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        **blob(manifest),
                        "annotations": {"org.opencontainers.image.ref.name": tag},
                    }
                )
        _add(tar, "index.json", json.dumps({"schemaVersion": 2, "manifests": index}).encode())
    return path


def archive_members(path: Path) -> dict[str, bytes]:
    """Every regular file of a tar, by name."""
    with tarfile.open(path) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isreg()
        }


def rewrite_archive(path: Path, members: dict[str, bytes]) -> Path:
    """Write ``members`` as the tar at ``path`` (to build corrupt archives)."""
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            _add(tar, name, data)
    return path
