"""Tar-split: a layer tar kept as its headers, with the files' bytes read back from the layer (moby's tar-split).

``image save`` must give back the very tar that was loaded. Keeping a copy
of it costs a second write of every byte at load time and the layer's size
again on disk. A tar-split keeps only what the layer's files do not hold:
headers, PAX records, padding, the end blocks, and the data of anything that
is not a plain regular file. Each regular file's bytes are named by its path
instead, and :class:`RebuiltTar` reads them from the applied layer when the
tar is needed again. What is rebuilt is hashed, so a layer whose files
changed since is an error, never a different tar.

The split is made in C (``_tarapply.split``) by the same header reader that
applies layers. It also says whether the tar can be rebuilt at all: a tar
that replaces or removes one of its own files (a path named twice, a whiteout
or opaque directory over it, a non-directory above it) leaves the layer
without those bytes, and the caller keeps the whole tar instead.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from drivebay.archive import _tarapply
from drivebay.errors import ArchiveIOError, DigestMismatch, DrivebayError, InvalidArchive, UnsafeArchive

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

MAGIC = b"DBSPLIT1"
_RAW = struct.Struct("<I")
_FILE = struct.Struct("<QI")
_END = struct.Struct("<Q")
_ERRORS: dict[int, type[DrivebayError]] = {
    _tarapply.UNSAFE: UnsafeArchive,
    _tarapply.INVALID: InvalidArchive,
    _tarapply.IO: ArchiveIOError,
}


@dataclass(frozen=True)
class Split:
    """A tar-split that was written: the size of the tar, and whether the layer holds every file it names.

    ``problem`` is what is wrong with a malformed tar (``InvalidArchive`` or
    ``UnsafeArchive``), whose split is then incomplete. It is returned, not
    raised, because the stream was still read to its end: a caller checking
    the stream's digest first can tell a corrupt blob from a bad tar.
    """

    size: int
    exact: bool
    problem: DrivebayError | None = None


def write_tar_split(tar: BinaryIO, out_fd: int) -> Split:
    """Read the uncompressed layer tar ``tar`` to its end and write its tar-split to ``out_fd``.

    Raises ``ArchiveIOError`` if ``out_fd`` refuses the write; an exception
    raised by the stream propagates unchanged.
    """
    size, exact, kind, message = _tarapply.split(tar, out_fd)
    if kind == _tarapply.IO:
        raise ArchiveIOError(message)
    if kind:
        return Split(size, False, _ERRORS[kind](message))
    return Split(size, exact)


class RebuiltTar(io.RawIOBase):
    """The tar of the tar-split ``split``, with each file's bytes read from ``root`` (the applied layer).

    ``what`` names the layer in errors. Read it to its end, then call
    :meth:`verify`: it raises ``DigestMismatch`` unless the bytes rebuilt hash
    to ``diff_id``.
    """

    def __init__(self, split: io.BufferedIOBase, root: Path, diff_id: str, what: str) -> None:
        super().__init__()
        if split.read(len(MAGIC)) != MAGIC:
            raise InvalidArchive(f"{what}: its tar-split does not start with {MAGIC!r}; load the image again")
        self._split = split
        self._root = root
        self._diff_id = diff_id
        self._what = what
        self._sha = hashlib.sha256()
        self._raw_left = 0
        self._file: int | None = None
        self._file_left = 0
        self._file_name = ""
        self._size: int | None = None
        self.produced = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view) and self._size is None:
            room = view[filled:]
            if self._raw_left:
                count = self._split.readinto(room[: self._raw_left])
                if not count:
                    raise InvalidArchive(f"{self._what}: its tar-split is truncated; load the image again")
                self._raw_left -= count
            elif self._file is not None:
                count = os.readv(self._file, [room[: self._file_left]])
                if not count:
                    raise DigestMismatch(
                        f"{self._what}: file '{self._file_name}' is shorter than when the layer was loaded; "
                        "the layer was changed, load the image again"
                    )
                self._file_left -= count
                if not self._file_left:
                    os.close(self._file)
                    self._file = None
            else:
                self._next_record()
                continue
            filled += count
        self._sha.update(view[:filled])
        self.produced += filled
        return filled

    def _next_record(self) -> None:
        kind = self._split.read(1)
        if kind == b"R":
            (self._raw_left,) = _RAW.unpack(self._exact(_RAW.size))
        elif kind == b"F":
            self._file_left, name_len = _FILE.unpack(self._exact(_FILE.size))
            self._file_name = os.fsdecode(self._exact(name_len))
            try:
                self._file = os.open(self._root / self._file_name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError as exc:
                raise DigestMismatch(
                    f"{self._what}: cannot read file '{self._file_name}' of the layer ({exc.strerror}); "
                    "the layer was changed, load the image again"
                ) from exc
        elif kind == b"E":
            (self._size,) = _END.unpack(self._exact(_END.size))
        else:
            raise InvalidArchive(f"{self._what}: its tar-split has an unknown record {kind!r}; load the image again")

    def _exact(self, count: int) -> bytes:
        data = self._split.read(count)
        if len(data) != count:
            raise InvalidArchive(f"{self._what}: its tar-split is truncated; load the image again")
        return data

    def verify(self) -> None:
        """Raise ``DigestMismatch`` unless the whole tar was rebuilt and hashes to the layer's diff ID."""
        # A reader that takes exactly the tar's size stops before the end record.
        while self._size is None and not self._raw_left and self._file is None:
            self._next_record()
        digest = "sha256:" + self._sha.hexdigest()
        if self._size is None or self.produced != self._size or digest != self._diff_id:
            raise DigestMismatch(
                f"{self._what}: the tar rebuilt from the layer's files hashes to {digest}, not its diff ID "
                f"{self._diff_id}; the layer was changed, load the image again"
            )

    def close(self) -> None:
        if self._file is not None:
            os.close(self._file)
            self._file = None
        super().close()
