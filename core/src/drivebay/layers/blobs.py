"""Turning a layer blob into an uncompressed temporary tar, with its digests.

A plain tar lying in a file (a ``docker save`` layer, an uncompressed OCI
blob, a root filesystem to import) is copied by the kernel with
``copy_file_range`` (a reflink on btrfs and xfs) while a second thread hashes
it, so the copy costs little more than the hash. A gzip or zstd blob is
decompressed, hashed and written as it streams.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from drivebay import archive
from drivebay.errors import InvalidArchive

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

CHUNK = 1 << 20
HASH_CHUNK = 4 << 20
COMPRESSED_MAGIC = (b"\x1f\x8b", b"\x28\xb5\x2f\xfd")
_NO_KERNEL_COPY = {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF}

Progress = Callable[[int], None]


class _RegionReader(io.RawIOBase):
    """A read-only window ``[offset, offset + size)`` of an open file, read with ``pread``."""

    def __init__(self, fd: int, offset: int, size: int) -> None:
        super().__init__()
        self._fd = fd
        self._offset = offset
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        want = min(len(view), self._size - self._pos)
        if want <= 0:
            return 0
        data = os.pread(self._fd, want, self._offset + self._pos)
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)


@dataclass(frozen=True)
class FileRegion:
    """``size`` bytes at ``offset`` of the open file ``fd`` (not owned: the caller closes it)."""

    fd: int
    offset: int
    size: int

    def open(self) -> BinaryIO:
        return io.BufferedReader(_RegionReader(self.fd, self.offset, self.size), CHUNK)

    def is_compressed(self) -> bool:
        return os.pread(self.fd, 4, self.offset).startswith(COMPRESSED_MAGIC)


@dataclass(frozen=True)
class Materialized:
    """What was written: the diff ID (digest of the tar), the blob's own digest, the tar's size."""

    diff_id: str
    blob_digest: str | None
    size: int


def _hash_region(region: FileRegion, sha: hashlib._Hash, failures: list[BaseException]) -> None:
    try:
        done = 0
        while done < region.size:
            data = os.pread(region.fd, min(HASH_CHUNK, region.size - done), region.offset + done)
            if not data:
                raise InvalidArchive(f"blob ends after {done} of its {region.size} bytes; the archive is truncated")
            sha.update(data)
            done += len(data)
    except BaseException as exc:
        failures.append(exc)


def _kernel_copy(region: FileRegion, out: int, progress: Progress | None) -> None:
    done = 0
    use_copy_file_range = True
    while done < region.size:
        count = region.size - done
        try:
            if use_copy_file_range:
                moved = os.copy_file_range(region.fd, out, count, region.offset + done, done)
            else:
                moved = os.sendfile(out, region.fd, region.offset + done, count)
        except OSError as exc:
            if use_copy_file_range and exc.errno in _NO_KERNEL_COPY:
                # Across filesystems, or a filesystem without it: sendfile still copies in the kernel.
                use_copy_file_range = False
                os.lseek(out, done, os.SEEK_SET)
                continue
            raise
        if moved == 0:
            raise InvalidArchive(f"blob ends after {done} of its {region.size} bytes; the archive is truncated")
        done += moved
        if progress is not None:
            progress(moved)


def copy_plain(region: FileRegion, dest: Path, progress: Progress | None = None) -> Materialized:
    """Copy a plain tar to ``dest`` in the kernel while another thread hashes it."""
    sha = hashlib.sha256()
    failures: list[BaseException] = []
    hasher = threading.Thread(target=_hash_region, args=(region, sha, failures), name="drivebay-hash")
    hasher.start()
    try:
        out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            _kernel_copy(region, out, progress)
        finally:
            os.close(out)
    finally:
        hasher.join()
    if failures:
        raise failures[0]
    digest = "sha256:" + sha.hexdigest()
    return Materialized(diff_id=digest, blob_digest=digest, size=region.size)


class _CountingReader(io.RawIOBase):
    """Reads through to ``raw``, counting what passes and hashing it if asked."""

    def __init__(self, raw: BinaryIO, hashing: bool) -> None:
        super().__init__()
        self.raw = raw
        self.sha = hashlib.sha256() if hashing else None
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self.raw.read(len(view))
        view[: len(data)] = data
        if self.sha is not None:
            self.sha.update(data)
        self.count += len(data)
        return len(data)


def decompress(raw: BinaryIO, dest: Path, hash_blob: bool, progress: Progress | None = None) -> Materialized:
    """Write the uncompressed content of ``raw`` (plain, gzip or zstd) to ``dest``, hashing both sides."""
    counting = _CountingReader(raw, hashing=hash_blob)
    sha = hashlib.sha256()
    size = 0
    with archive.open_layer_stream(io.BufferedReader(counting, CHUNK)) as stream, open(dest, "xb") as out:
        seen = 0
        while chunk := stream.read(CHUNK):
            sha.update(chunk)
            out.write(chunk)
            size += len(chunk)
            if progress is not None:
                progress(counting.count - seen)
                seen = counting.count
    blob_digest = None
    if counting.sha is not None:
        while counting.read(CHUNK):
            pass
        blob_digest = "sha256:" + counting.sha.hexdigest()
    return Materialized(diff_id="sha256:" + sha.hexdigest(), blob_digest=blob_digest, size=size)


def materialize(region: FileRegion, dest: Path, progress: Progress | None = None) -> Materialized:
    """The uncompressed tar of the blob in ``region`` at ``dest``, by the fastest path that applies."""
    if region.is_compressed():
        with region.open() as raw:
            return decompress(raw, dest, hash_blob=True, progress=progress)
    return copy_plain(region, dest, progress)
