"""Reading a json-file log: whole, tail, since/until and follow, across rotated and gzipped files.

A reader opens the live file and every rotated file while holding a shared
``flock`` on the live file; the writer takes it exclusively to rotate (as
moby's ``fsopMu``), so the set of open files is consistent: each is known to
be the file its name said, in order. Files are also told apart by their first
line (a record with a nanosecond timestamp), which survives compression: a
follower finds the file it finished among the rotated ones, however many
rotations happened while it was reading.

A line that is not a complete record (a torn write, a crash mid-line) is
skipped; an unterminated last line of the live file is waited for when
following and ignored otherwise. A damaged gzip file is read as far as it
decompresses.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import time
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from drivebay.errors import LogNotFound
from drivebay.hookspecs.log import LogEntry, LogInfo, ReadConfig
from drivebay_logdriver_json.jsonline import Record, RecordDecoder, TimeParser
from drivebay_logdriver_json.logfile import gzip_extra, log_path, rotated_pattern, writer_active

CHUNK = 1 << 16
IDENTITY_BYTES = 1 << 16
_OPEN_ATTEMPTS = 1000
_GZIP_DAMAGE = (OSError, EOFError, zlib.error)


# -- files ------------------------------------------------------------------------


@dataclass
class OpenFile:
    """A rotated (or live) file held open; ``index`` 0 is the live file, ``k`` is ``.k``."""

    index: int
    path: Path
    compressed: bool
    fd: int

    def close(self) -> None:
        os.close(self.fd)

    def _plain_prefix(self) -> bytes:
        return os.pread(self.fd, IDENTITY_BYTES, 0)

    def _gzip_stream(self) -> gzip.GzipFile:
        raw = os.fdopen(os.dup(self.fd), "rb")
        raw.seek(0)
        return gzip.GzipFile(fileobj=raw, mode="rb")

    def _gzip_chunks(self) -> Iterator[bytes]:
        try:
            with self._gzip_stream() as stream:
                while chunk := stream.read(1 << 20):
                    yield chunk
        except _GZIP_DAMAGE:
            return

    def identity(self) -> bytes:
        """The file's first complete line, or ``b""`` while it has none."""
        if self.compressed:
            try:
                with self._gzip_stream() as stream:
                    head = stream.read(IDENTITY_BYTES)
            except _GZIP_DAMAGE:
                return b""
        else:
            head = self._plain_prefix()
        newline = head.find(b"\n")
        return head[:newline] if newline >= 0 else b""

    def lines(self) -> Iterator[bytes]:
        """Every complete line, oldest first; an unterminated last line is left out."""
        if self.compressed:
            yield from _complete_lines(self._gzip_chunks())
        else:
            yield from _complete_lines(_pread_chunks(self.fd, 0))

    def lines_backward(self) -> Iterator[bytes]:
        """Every complete line, newest first."""
        if self.compressed:
            data = b"".join(self._gzip_chunks())
            yield from reversed(data[: data.rfind(b"\n") + 1].split(b"\n")[:-1])
        else:
            yield from lines_backward(self.fd, os.fstat(self.fd).st_size)

    def last_time_ns(self, decoder: RecordDecoder) -> int | None:
        """The time of the last line: from the gzip header (Docker's ``lastTime``) or the file's end."""
        if self.compressed:
            extra = gzip_extra(os.pread(self.fd, 12 + 0xFFFF, 0))
            if extra:
                try:
                    return TimeParser()(str(json.loads(extra)["lastTime"]))
                except (ValueError, KeyError, TypeError):
                    return None
            return None
        for raw in self.lines_backward():
            record = decoder.decode(raw)
            if record is not None:
                return record.timestamp_ns
        return None


def _pread_chunks(fd: int, offset: int) -> Iterator[bytes]:
    while chunk := os.pread(fd, 1 << 20, offset):
        offset += len(chunk)
        yield chunk


def _complete_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    rest = b""
    for chunk in chunks:
        data = rest + chunk if rest else chunk
        end = data.rfind(b"\n")
        if end < 0:
            rest = data
            continue
        yield from data[:end].split(b"\n")
        rest = data[end + 1 :]


def lines_backward(fd: int, end: int) -> Iterator[bytes]:
    """Complete lines of ``fd`` before offset ``end``, newest first; reads only as far back as consumed."""
    position = end_of_complete_lines(fd, end)
    buffer = b""  # always ends with a newline: the unconsumed lines, the first maybe cut short
    while position > 0:
        start = max(0, position - CHUNK)
        buffer = os.pread(fd, position - start, start) + buffer
        position = start
        parts = buffer.split(b"\n")
        if position > 0:
            yield from reversed(parts[1:-1])
            buffer = parts[0] + b"\n"
        else:
            yield from reversed(parts[:-1])


def end_of_complete_lines(fd: int, end: int) -> int:
    """The offset just past the last newline before ``end`` (0 if none)."""
    position = end
    while position > 0:
        start = max(0, position - CHUNK)
        data = os.pread(fd, position - start, start)
        newline = data.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        position = start
    return 0


class LogFiles:
    """The live file and rotated files of one log."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pattern = rotated_pattern(path)

    def _names(self) -> dict[int, tuple[Path, bool]]:
        found: dict[int, tuple[Path, bool]] = {}
        try:
            names = os.listdir(self.path.parent)
        except FileNotFoundError:
            return found
        for name in names:
            match = self._pattern.fullmatch(name)
            if match is None:
                continue
            index, compressed = int(match.group(1)), match.group(2) is not None
            # While compression finishes both exist; the plain one is complete and cheaper to read.
            if index not in found or not compressed:
                found[index] = (self.path.parent / name, compressed)
        return found

    def is_live(self, item: OpenFile) -> bool:
        """Whether ``item`` is still the file the live name points to."""
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(item.fd)
        return (named.st_ino, named.st_dev) == (held.st_ino, held.st_dev)

    def _open_index(self, index: int) -> OpenFile | None:
        # While compression finishes both exist; the plain one is complete and cheaper to read.
        for path, compressed in ((Path(f"{self.path}.{index}"), False), (Path(f"{self.path}.{index}.gz"), True)):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            return OpenFile(index, path, compressed, fd)
        return None

    def open_all(self) -> tuple[OpenFile, list[OpenFile]] | None:
        """The live file and every rotated file (newest first), opened while no rotation can run.

        ``None`` when the log has no live file.
        """
        for _ in range(_OPEN_ATTEMPTS):
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                if not self.path.parent.exists() or not writer_active(self.path.parent):
                    return None
                time.sleep(0.001)  # between the rename and the new file of a rotation
                continue
            live = OpenFile(0, self.path, False, fd)
            fcntl.flock(fd, fcntl.LOCK_SH)
            if not self.is_live(live):
                live.close()  # rotated before the lock was ours; closing drops the lock
                continue
            try:
                rotated = [item for index in sorted(self._names()) if (item := self._open_index(index))]
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
            return live, rotated
        raise LogNotFound(f"the live file of log {self.path} keeps changing; is a writer rotating it very fast?")


# -- records to entries ----------------------------------------------------------------


class EntryBuilder:
    """Joins split parts per stream (unless asked not to) and applies since."""

    def __init__(self, config: ReadConfig) -> None:
        self.config = config
        self._pending: dict[str, list[Record]] = {}

    def push(self, record: Record) -> LogEntry | None:
        ends = record.log.endswith("\n")
        if not self.config.join_partial:
            text = record.log[:-1] if ends else record.log
            return self._admit(LogEntry(text, record.stream, record.timestamp_ns, record.attrs, partial=not ends))
        if not ends:
            self._pending.setdefault(record.stream, []).append(record)
            return None
        parts = self._pending.pop(record.stream, None)
        if not parts:
            return self._admit(LogEntry(record.log[:-1], record.stream, record.timestamp_ns, record.attrs))
        text = "".join(p.log for p in parts) + record.log[:-1]
        return self._admit(LogEntry(text, record.stream, parts[0].timestamp_ns, parts[0].attrs))

    def flush(self) -> list[LogEntry]:
        """Lines whose last part never came (the log ends mid-line)."""
        entries = []
        for stream, parts in self._pending.items():
            entry = self._admit(
                LogEntry("".join(p.log for p in parts), stream, parts[0].timestamp_ns, parts[0].attrs, partial=True)
            )
            if entry is not None:
                entries.append(entry)
        self._pending.clear()
        return entries

    def _admit(self, entry: LogEntry) -> LogEntry | None:
        since = self.config.since_ns
        return None if since is not None and entry.timestamp_ns < since else entry


class _UntilReached(Exception):
    """Raised inside the reader when a line after ``until`` arrives."""


class LogReader:
    """One read of one log, as :class:`ReadConfig` says."""

    def __init__(self, info: LogInfo, config: ReadConfig) -> None:
        self.info = info
        self.config = config
        self.files = LogFiles(log_path(info.container_root, info.container_id))
        self.decoder = RecordDecoder()
        self.builder = EntryBuilder(config)
        opened = self.files.open_all()
        if opened is None:
            raise LogNotFound(
                f"container '{info.container_name}' has no log at {self.files.path}; "
                "run something with 'drivebay logs capture' first"
            )
        self.live, rotated = opened
        self._older = list(reversed(rotated))  # oldest first
        self.live_offset = 0
        self._live_rest = b""

    # -- helpers ----------------------------------------------------------------

    def _entries(self, lines: Iterable[bytes]) -> Iterator[LogEntry]:
        until = self.config.until_ns
        for raw in lines:
            record = self.decoder.decode(raw)
            if record is None:
                continue
            entry = self.builder.push(record)
            if entry is None:
                continue
            if until is not None and entry.timestamp_ns > until:
                raise _UntilReached
            yield entry

    def _skip_by_since(self, item: OpenFile) -> bool:
        since = self.config.since_ns
        if since is None:
            return False
        last = item.last_time_ns(self.decoder)
        return last is not None and last < since

    def _read_live(self) -> list[bytes]:
        """New complete lines of the live file since the last call."""
        lines: list[bytes] = []
        while True:
            chunk = os.pread(self.live.fd, 1 << 20, self.live_offset + len(self._live_rest))
            if not chunk:
                return lines
            data = self._live_rest + chunk
            end = data.rfind(b"\n")
            if end < 0:
                self._live_rest = data
                continue
            lines.extend(data[:end].split(b"\n"))
            self.live_offset += end + 1
            self._live_rest = data[end + 1 :]

    # -- the read -----------------------------------------------------------------

    def __iter__(self) -> Iterator[LogEntry]:
        try:
            yield from self._read()
        except _UntilReached:
            return
        finally:
            self.live.close()
            for item in self._older:
                item.close()

    def _read(self) -> Iterator[LogEntry]:
        older, self._older = self._older, []
        try:
            if self.config.tail is not None:
                yield from self._tail(older)
            else:
                for item in older:
                    if not self._skip_by_since(item):
                        yield from self._entries(item.lines())
                yield from self._entries(self._read_live())
        finally:
            for item in older:
                item.close()
        if self.config.follow:
            yield from self._follow()
        else:
            yield from self.builder.flush()

    def _tail(self, older: list[OpenFile]) -> Iterator[LogEntry]:
        wanted = self.config.tail or 0
        end = os.fstat(self.live.fd).st_size
        self.live_offset = end_of_complete_lines(self.live.fd, end)
        if wanted <= 0:
            return
        since, until = self.config.since_ns, self.config.until_ns
        newest_first: list[bytes] = []
        finals = 0
        sources: list[Iterator[bytes]] = [lines_backward(self.live.fd, self.live_offset)]
        sources += [item.lines_backward() for item in reversed(older) if not self._skip_by_since(item)]
        for source in sources:
            for raw in source:
                record = self.decoder.decode(raw)
                if record is None:
                    continue
                is_final = record.log.endswith("\n") or not self.config.join_partial
                if finals >= wanted and is_final:
                    break
                if since is not None and record.timestamp_ns < since:
                    break
                newest_first.append(raw)
                if is_final and (until is None or record.timestamp_ns <= until):
                    finals += 1
            else:
                continue
            break
        window: deque[LogEntry] = deque(maxlen=wanted)
        for raw in reversed(newest_first):
            record = self.decoder.decode(raw)
            assert record is not None
            entry = self.builder.push(record)
            if entry is not None and (until is None or entry.timestamp_ns <= until):
                window.append(entry)
        yield from window

    def _follow(self) -> Iterator[LogEntry]:
        root = self.info.container_root
        until = self.config.until_ns
        while True:
            lines = self._read_live()
            if lines:
                yield from self._entries(lines)
                continue
            held = os.fstat(self.live.fd)
            try:
                named = os.stat(self.files.path)
            except FileNotFoundError:
                named = None
            if named is not None and (named.st_ino, named.st_dev) == (held.st_ino, held.st_dev):
                if named.st_size < self.live_offset:  # truncated from outside: start over
                    self.live_offset, self._live_rest = 0, b""
                    continue
                if not writer_active(root):
                    yield from self._entries(self._read_live())
                    yield from self.builder.flush()
                    return
            elif named is not None:
                yield from self._switch_to_new_live()
                continue
            elif not writer_active(root):
                yield from self.builder.flush()
                return
            if until is not None and time.time_ns() > until:
                return
            time.sleep(self.config.poll_seconds)

    def _switch_to_new_live(self) -> Iterator[LogEntry]:
        """The live file was rotated: finish it, read the files rotated after it, continue with the new one."""
        yield from self._entries(self._read_live())
        opened = self.files.open_all()
        if opened is None:
            return
        finished = self.live
        self.live, rotated = opened
        self.live_offset, self._live_rest = 0, b""
        try:
            between = self._newer_than(finished, rotated)
            for item in between:
                yield from self._entries(item.lines())
        finally:
            finished.close()
            for item in rotated:
                item.close()

    @staticmethod
    def _newer_than(finished: OpenFile, rotated: list[OpenFile]) -> list[OpenFile]:
        """The rotated files (given newest first) written after ``finished``, oldest first."""
        held = os.fstat(finished.fd)
        identity = finished.identity()
        for position, item in enumerate(rotated):
            stat = os.fstat(item.fd)
            if (stat.st_ino, stat.st_dev) == (held.st_ino, held.st_dev) or (
                item.compressed and identity and item.identity() == identity
            ):
                return list(reversed(rotated[:position]))
        # The finished file is gone (deleted by max-file): everything still kept is newer than it.
        return list(reversed(rotated))


def read_log(info: LogInfo, config: ReadConfig) -> Iterator[LogEntry]:
    """Open the log now (so a missing log raises at once) and return the entries lazily."""
    return iter(LogReader(info, config))
