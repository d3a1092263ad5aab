"""Writing one container's json-file log: appends, rotation, background gzip, drops.

Rotation follows moby's ``loggerutils.LogFile``: before a message is written,
a file at or past ``max-size`` is rotated: ``.N-1`` is deleted, ``.k`` shifts
to ``.k+1``, the live file becomes ``.1`` and a new one is created; with
``max-file=1`` the live file is unlinked instead. With ``compress`` a thread
gzips ``.1`` into ``.1.gz`` (its gzip header carries ``{"lastTime": ...}``,
the time of its last line, as Docker writes it) and only then deletes ``.1``,
so a reader always finds one complete copy. Readers that hold a file open
keep reading it after it is renamed or unlinked.

One process writes a log at a time: it holds an exclusive ``flock`` on the
container directory, which readers also use to tell whether a writer is live.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import struct
import threading
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

from drivebay.errors import LogInUse
from drivebay.facades.log import utf8_cut
from drivebay.hookspecs.log import LogInfo, LogMessage, LogStats
from drivebay_logdriver_json.jsonline import RecordEncoder, TimeFormat
from drivebay_logdriver_json.options import JsonFileOptions, extra_attributes

FILE_MODE = 0o640
SPLIT_BYTES = 16 * 1024
"""Docker's copier buffer: longer lines are stored in parts of at most this many bytes."""

READER_LOCK_SECONDS = 1.0
"""How long a rotation waits for readers that are opening the log's files."""

_GZIP_FEXTRA = 0x04


def log_path(container_root: Path, container_id: str) -> Path:
    """``containers/<id>/<id>-json.log``."""
    return container_root / f"{container_id}-json.log"


def rotated_pattern(path: Path) -> re.Pattern[str]:
    """Matches the names of ``path``'s rotated files: ``.N`` and ``.N.gz``."""
    return re.compile(re.escape(path.name) + r"\.(\d+)(\.gz)?$")


def gzip_header(last_time_ns: int) -> bytes:
    """The gzip member header Go writes with ``Header.Extra = {"lastTime": ...}`` (no name, mtime 0, OS unknown)."""
    extra = json.dumps({"lastTime": TimeFormat()(last_time_ns)}, separators=(",", ":")).encode()
    return b"\x1f\x8b\x08" + bytes([_GZIP_FEXTRA]) + b"\x00\x00\x00\x00\x00\xff" + struct.pack("<H", len(extra)) + extra


def gzip_extra(head: bytes) -> bytes | None:
    """The FEXTRA field of a gzip file whose first bytes are ``head``, or ``None`` when it has none."""
    if len(head) < 12 or head[:2] != b"\x1f\x8b" or not head[3] & _GZIP_FEXTRA:
        return None
    (length,) = struct.unpack("<H", head[10:12])
    return head[12 : 12 + length]


def compress_file(source: Path, last_time_ns: int) -> None:
    """Gzip ``source`` to ``source.gz`` with the lastTime header, then delete ``source``.

    The gzip is written under a temporary name and renamed, so a crash never
    leaves a half file where readers look.
    """
    target = source.with_name(source.name + ".gz")
    temporary = source.with_name(source.name + ".gz.tmp")
    deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    crc, size = 0, 0
    try:
        with open(source, "rb") as src, open(temporary, "wb") as out:
            os.fchmod(out.fileno(), FILE_MODE)
            out.write(gzip_header(last_time_ns))
            while chunk := src.read(1 << 20):
                crc = zlib.crc32(chunk, crc)
                size += len(chunk)
                out.write(deflate.compress(chunk))
            out.write(deflate.flush())
            out.write(struct.pack("<II", crc & 0xFFFFFFFF, size & 0xFFFFFFFF))
        os.rename(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    source.unlink()


def _unlink_if_present(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return


def _rename_if_present(source: str, target: str) -> None:
    try:
        os.rename(source, target)
    except FileNotFoundError:
        return


class JsonLogFile:
    """The writer of one container's log; not thread-safe (core calls ``write`` from one thread)."""

    def __init__(self, info: LogInfo, options: JsonFileOptions) -> None:
        self.info = info
        self.options = options
        self.path = log_path(info.container_root, info.container_id)
        self.written = 0
        self.dropped = 0
        self.last_error: str | None = None
        self._encoder = RecordEncoder(extra_attributes(info))
        self._last_ns = 0
        self._torn = False
        self._compressor: threading.Thread | None = None
        self._compress_error: BaseException | None = None
        info.container_root.mkdir(parents=True, exist_ok=True)
        self._dir_fd = os.open(info.container_root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(self._dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(self._dir_fd)
            raise LogInUse(
                f"the log of container '{info.container_name}' is being written by another process; "
                "stop that one first"
            ) from exc
        try:
            self._fd = self._open_live()
        except BaseException:
            os.close(self._dir_fd)
            raise
        self.size = os.fstat(self._fd).st_size
        # A crash mid-line left a torn last line: the next record must not be glued to it.
        self._torn = self.size > 0 and os.pread(self._fd, 1, self.size - 1) != b"\n"

    def _open_live(self) -> int:
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        os.fchmod(fd, FILE_MODE)  # the umask must not widen or narrow Docker's 0640
        return fd

    # -- writing ------------------------------------------------------------

    def _records(self, message: LogMessage) -> list[bytes]:
        line = message.line
        if len(line) <= SPLIT_BYTES:
            return [self._encoder.encode(line, message.source, message.timestamp_ns, not message.partial)]
        records = []
        while len(line) > SPLIT_BYTES:
            cut = utf8_cut(line, SPLIT_BYTES)
            records.append(self._encoder.encode(line[:cut], message.source, message.timestamp_ns, False))
            line = line[cut:]
        records.append(self._encoder.encode(line, message.source, message.timestamp_ns, not message.partial))
        return records

    def write(self, messages: Sequence[LogMessage]) -> None:
        """Append ``messages``, rotating between them as needed; failures drop and count."""
        batch: list[bytes] = []
        counts: list[int] = []  # records per message, to count drops by message
        batch_size = 0
        capacity = self.options.max_size
        for message in messages:
            if capacity is not None and self.size + batch_size >= capacity:
                self._flush(batch, counts)
                batch, counts, batch_size = [], [], 0
                self._rotate_or_count()
            records = self._records(message)
            batch.extend(records)
            counts.append(len(records))
            batch_size += sum(map(len, records))
            self._last_ns = message.timestamp_ns
        self._flush(batch, counts)

    def _flush(self, records: list[bytes], counts: list[int]) -> None:
        if not records:
            return
        # After a torn write, a newline first ends the fragment, so it stays one unreadable line of its own.
        prefix = b"\n" if self._torn else b""
        data = prefix + b"".join(records)
        view = memoryview(data)
        done = 0
        try:
            while done < len(view):
                done += os.write(self._fd, view[done:])
        except OSError as exc:
            self.last_error = f"writing {self.path}: {exc.strerror}"
            self.size += done
            self._account_partial(records, counts, done - len(prefix))
            return
        self._torn = False
        self.size += len(data)
        self.written += len(counts)

    def _account_partial(self, records: list[bytes], counts: list[int], body_written: int) -> None:
        """Count the messages a failed write stored completely; the rest are dropped."""
        if body_written < 0:
            self.dropped += len(counts)
            return
        self._torn = False
        position, index = 0, 0
        for count in counts:
            length = sum(len(r) for r in records[index : index + count])
            index += count
            if position + length <= body_written:
                self.written += 1
            else:
                self.dropped += 1
                if position < body_written:
                    self._torn = True
            position += length

    # -- rotation ---------------------------------------------------------------

    def _rotate_or_count(self) -> None:
        try:
            self._rotate()
        except OSError as exc:
            # Keep appending to whatever file is open: losing rotation is better than losing lines.
            self.last_error = f"rotating {self.path}: {exc.strerror or exc}"

    def _wait_compression(self) -> None:
        if self._compressor is not None:
            self._compressor.join()
            self._compressor = None
        if self._compress_error is not None:
            error, self._compress_error = self._compress_error, None
            self.last_error = f"compressing a rotated file of {self.path}: {error}"

    def _lock_out_readers(self) -> None:
        """Take the live file's ``flock`` exclusively, so no reader is between opening files (bounded wait)."""
        deadline = time.monotonic() + READER_LOCK_SECONDS
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return  # a stuck reader must not stall the producer; readers re-check what they opened
                time.sleep(0.001)

    def _rotate(self) -> None:
        self._wait_compression()
        self._lock_out_readers()  # released when the old live file is closed below
        try:
            new_fd = self._shift_files()
        except BaseException:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            raise
        os.close(self._fd)
        self._fd, self.size, self._torn = new_fd, 0, False
        if self.options.compress and self.options.max_file >= 2:
            rotated = Path(f"{self.path}.1")
            self._compressor = threading.Thread(
                target=self._compress, args=(rotated, self._last_ns), name="drivebay-json-gzip", daemon=True
            )
            self._compressor.start()

    def _shift_files(self) -> int:
        """Move the live file to ``.1`` (shifting the others) or unlink it; returns the new live file."""
        max_file = self.options.max_file
        if max_file < 2:
            _unlink_if_present(str(self.path))
        else:
            base = str(self.path)
            for suffix in ("", ".gz"):
                _unlink_if_present(f"{base}.{max_file - 1}{suffix}")
            for index in range(max_file - 1, 1, -1):
                for suffix in ("", ".gz"):
                    _rename_if_present(f"{base}.{index - 1}{suffix}", f"{base}.{index}{suffix}")
            os.rename(self.path, f"{base}.1")
        new_fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
        os.fchmod(new_fd, FILE_MODE)
        return new_fd

    def _compress(self, rotated: Path, last_ns: int) -> None:
        try:
            compress_file(rotated, last_ns)
        except OSError as exc:
            # The uncompressed file stays where readers find it; the error surfaces in the stats.
            self._compress_error = exc

    # -- closing -------------------------------------------------------------------

    def close(self) -> LogStats:
        """Wait for compression, close the file and release the writer lock."""
        try:
            self._wait_compression()
        finally:
            os.close(self._fd)
            fcntl.flock(self._dir_fd, fcntl.LOCK_UN)
            os.close(self._dir_fd)
        return LogStats(written=self.written, dropped=self.dropped, last_error=self.last_error)


def writer_active(container_root: Path) -> bool:
    """Whether a process holds the writer lock of the log in ``container_root``."""
    try:
        fd = os.open(container_root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    finally:
        os.close(fd)
    return False
