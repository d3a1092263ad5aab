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
applies layers, and read back in C (``_tarapply.SplitReader``) through the
apply's directory walk, which never follows a symlink (per-file work in
Python cost tens of microseconds a file). The split also says whether the
tar can be rebuilt at all: a tar that replaces or removes one of its own
files (a path named twice, a whiteout or opaque directory over it, a
non-directory above it) leaves the layer without those bytes, and the caller
keeps the whole tar instead.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from drivebay.archive import _tarapply
from drivebay.errors import ArchiveIOError, DigestMismatch, DrivebayError, InvalidArchive, UnsafeArchive

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

MAGIC = b"DBSPLIT1"
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

    ``split`` is an open file (it is read through its fd, from its current
    offset); ``what`` names the layer in errors. Read it to its end, then call
    :meth:`verify`: it raises ``DigestMismatch`` unless the bytes rebuilt hash
    to ``diff_id``. Reading raises ``DigestMismatch`` naming the file for a
    file the layer no longer holds as it was loaded: missing, shorter, not a
    regular file, or behind a symlink or non-directory on its path, which is
    never followed, so no byte from outside ``root`` is ever read. A malformed
    or truncated split raises ``InvalidArchive``; a failed read
    ``ArchiveIOError``.

    The records are read and the files opened and read in C
    (``_tarapply.SplitReader``); only the hash is done here, on each chunk.
    """

    _reader: _tarapply.SplitReader | None = None

    def __init__(self, split: io.BufferedIOBase, root: Path, diff_id: str, what: str) -> None:
        super().__init__()
        if split.read(len(MAGIC)) != MAGIC:
            raise InvalidArchive(f"{what}: its tar-split does not start with {MAGIC!r}; load the image again")
        try:
            root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise DigestMismatch(
                f"{what}: cannot open the layer's directory {root} ({exc.strerror}); load the image again"
            ) from exc
        try:
            self._reader = _tarapply.SplitReader(split.fileno(), split.tell(), root_fd)
        finally:
            os.close(root_fd)
        self._diff_id = diff_id
        self._what = what
        self._sha = hashlib.sha256()
        self.produced = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        count, kind, message = self._open_reader().readinto(buffer)
        if kind:
            raise self._error(kind, message)
        self._sha.update(memoryview(buffer).cast("B")[:count])
        self.produced += count
        return count

    def _open_reader(self) -> _tarapply.SplitReader:
        if self._reader is None:
            raise ValueError("I/O operation on a closed RebuiltTar")
        return self._reader

    def _error(self, kind: int, message: str) -> DrivebayError:
        if kind == _tarapply.CHANGED:
            return DigestMismatch(f"{self._what}: {message}; the layer was changed, load the image again")
        if kind == _tarapply.INVALID:
            return InvalidArchive(f"{self._what}: {message}; load the image again")
        return ArchiveIOError(f"{self._what}: {message}")

    def verify(self) -> None:
        """Raise ``DigestMismatch`` unless the whole tar was rebuilt and hashes to the layer's diff ID."""
        # An empty read produces nothing, but reads the next record: a caller that stopped at the tar's
        # size, or never read an empty tar, has rebuilt all of it if that is the end record.
        self.readinto(bytearray())
        digest = "sha256:" + self._sha.hexdigest()
        size = self._open_reader().size
        if size is None or self.produced != size or digest != self._diff_id:
            raise DigestMismatch(
                f"{self._what}: the tar rebuilt from the layer's files hashes to {digest}, not its diff ID "
                f"{self._diff_id}; the layer was changed, load the image again"
            )

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        super().close()
