"""Image archives (``docker save`` and OCI layout tarballs): random access to members, format detection.

Both formats are an outer tar of small JSON files and large layer blobs. The
outer tar is indexed once with :mod:`tarfile`; blobs are then read straight
from their offsets with ``pread``, so a layer is never copied to find it.
"""

from __future__ import annotations

import io
import os
import posixpath
import tarfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from drivebay import archive
from drivebay.errors import InvalidArchive
from drivebay.layers.blobs import COMPRESSED_MAGIC, FileRegion

JSON_LIMIT = 64 << 20
"""The largest manifest or config read into memory; real ones are kilobytes."""


@dataclass(frozen=True)
class LayerBlob:
    """One layer of an archived image.

    ``digest`` is the digest of the blob as stored (OCI) or ``None`` when the
    archive names only the diff ID (``docker save``, whose blobs are plain tars).
    """

    member: str
    digest: str | None
    size: int


@dataclass(frozen=True)
class TarSource:
    """A layer tar to be written into an archive: its size, and how to open it for one read."""

    size: int
    open: Callable[[], AbstractContextManager[BinaryIO]]

    @classmethod
    def file(cls, path: Path) -> TarSource:
        """The tar in the file ``path``."""
        return cls(path.stat().st_size, lambda: open(path, "rb"))


@dataclass(frozen=True)
class SavedLayer:
    """A layer to write into an archive: its IDs and its original tar."""

    chain_id: str
    diff_id: str
    tar: TarSource


@dataclass(frozen=True)
class SavedImage:
    """An image to write into an archive."""

    id: str
    config: bytes
    tags: tuple[str, ...]
    layers: tuple[SavedLayer, ...]


@dataclass(frozen=True)
class ArchiveImage:
    """An image found in an archive: config bytes, tags and layer blobs, bottom first."""

    config: bytes
    tags: tuple[str, ...]
    layers: tuple[LayerBlob, ...]
    source: str


def _normalize(name: str) -> str:
    return posixpath.normpath(name.removeprefix("./")).lstrip("/")


class ArchiveFile:
    """The members of an image archive tar, by normalized name."""

    def __init__(self, path: Path, label: str) -> None:
        self.path = path
        self.label = label
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            with tarfile.open(path, "r:") as tar:
                members = {_normalize(m.name): m for m in tar.getmembers()}
        except (tarfile.TarError, OSError) as exc:
            os.close(self._fd)
            raise InvalidArchive(f"{label} is not a readable tar archive ({exc}); check the file") from exc
        self._members = members

    def close(self) -> None:
        os.close(self._fd)

    def _resolve(self, name: str) -> tarfile.TarInfo:
        wanted = _normalize(name)
        for _ in range(16):
            member = self._members.get(wanted)
            if member is None:
                raise InvalidArchive(f"{self.label} has no member '{name}'; the archive is incomplete")
            if member.issym():
                wanted = _normalize(posixpath.join(posixpath.dirname(wanted), member.linkname))
            elif member.islnk():
                wanted = _normalize(member.linkname)
            elif member.isreg():
                return member
            else:
                raise InvalidArchive(f"{self.label}: member '{name}' is not a regular file")
        raise InvalidArchive(f"{self.label}: member '{name}' is a link loop")

    def has(self, name: str) -> bool:
        return _normalize(name) in self._members

    def size(self, name: str) -> int:
        return int(self._resolve(name).size)

    def region(self, name: str) -> FileRegion:
        """Where member ``name`` lies in the archive file (valid until :meth:`close`)."""
        member = self._resolve(name)
        return FileRegion(self._fd, member.offset_data, member.size)

    def read(self, name: str) -> bytes:
        """A small member (JSON), whole."""
        member = self._resolve(name)
        if member.size > JSON_LIMIT:
            raise InvalidArchive(f"{self.label}: '{name}' is {member.size} bytes, too big for metadata")
        return os.pread(self._fd, member.size, member.offset_data)


@contextmanager
def open_image_archive(path: Path, scratch: Path) -> Iterator[ArchiveFile]:
    """Open ``path``; a gzip or zstd compressed archive is first decompressed to ``scratch``."""
    label = f"image archive {path}"
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise InvalidArchive(f"cannot read {label}: {exc.strerror}; check the path") from exc
    target = path
    if magic.startswith(COMPRESSED_MAGIC):
        target = scratch
        with open(path, "rb") as raw, archive.open_layer_stream(raw) as stream, open(scratch, "wb") as out:
            while chunk := stream.read(1 << 20):
                out.write(chunk)
    try:
        arc = ArchiveFile(target, label)
        try:
            yield arc
        finally:
            arc.close()
    finally:
        if target == scratch:
            scratch.unlink(missing_ok=True)


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """Add a small file to an archive being written."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def add_tar(tar: tarfile.TarFile, name: str, source: TarSource) -> None:
    """Add a layer tar to an archive being written."""
    info = tarfile.TarInfo(name)
    info.size = source.size
    info.mode = 0o644
    with source.open() as f:
        tar.addfile(info, f)


def add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    tar.addfile(info)


@contextmanager
def writing_archive(out: BinaryIO) -> Iterator[tarfile.TarFile]:
    """An outer archive tar on ``out``, with big copy buffers for layer blobs."""
    with tarfile.TarFile(fileobj=out, mode="w", format=tarfile.PAX_FORMAT, copybufsize=1 << 20) as tar:
        yield tar
