"""Reading a json-file log: whole, tail, since/until and follow, across rotated and gzipped files.

Files are told apart by their first line (a record with a nanosecond
timestamp), which survives renames and compression; a reader therefore knows
which rotated files it has read, however many rotations happened while it was
not looking. Names are listed, opened, then listed again: a listing that
changed in between (a rotation) is retried, so every open file descriptor is
known to be the file its name said.

A line that is not a complete record (a torn write, a crash mid-line) is
skipped; an unterminated last line of the live file is waited for when
following and ignored otherwise.
"""

from __future__ import annotations

import gzip
import json
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from drivebay.errors import LogNotFound
from drivebay.hookspecs.log import LogEntry, LogInfo, ReadConfig
from drivebay_logdriver_json.jsonline import Record, RecordDecoder, TimeParser
from drivebay_logdriver_json.logfile import log_path, read_gzip_extra, rotated_pattern, writer_active

CHUNK = 1 << 16
IDENTITY_BYTES = 1 << 16
_SNAPSHOT_ATTEMPTS = 50


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

    def identity(self) -> bytes:
        """The file's first complete line, or ``b""`` while it has none."""
        if self.compressed:
            with self._gzip_stream() as stream:
                head = stream.read(IDENTITY_BYTES)
        else:
            head = self._plain_prefix()
        newline = head.find(b"\n")
        return head[:newline] if newline >= 0 else b""

    def lines(self) -> Iterator[bytes]:
        """Every complete line, oldest first; an unterminated last line is left out."""
        if self.compressed:
            with self._gzip_stream() as stream:
                yield from _complete_lines(iter(lambda: stream.read(1 << 20), b""))
        else:
            yield from _complete_lines(_pread_chunks(self.fd, 0))

    def lines_backward(self) -> Iterator[bytes]:
        """Every complete line, newest first."""
        if self.compressed:
            with self._gzip_stream() as stream:
                data = stream.read()
            yield from reversed(data[: data.rfind(b"\n") + 1].split(b"\n")[:-1])
        else:
            yield from lines_backward(self.fd, os.fstat(self.fd).st_size)

    def last_time_ns(self, decoder: RecordDecoder) -> int | None:
        """The time of the last line: from the gzip header (Docker's ``lastTime``) or the file's end."""
        if self.compressed:
            extra = read_gzip_extra(self.path) if self.path.exists() else None
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

    def open_live(self) -> OpenFile | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        return OpenFile(0, self.path, False, fd)

    def open_rotated(self) -> list[OpenFile]:
        """Every rotated file, newest first, opened from a listing that stayed the same while opening."""
        for _ in range(_SNAPSHOT_ATTEMPTS):
            names = self._names()
            opened: list[OpenFile] = []
            stable = True
            for index in sorted(names):
                path, compressed = names[index]
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    stable = False
                    break
                opened.append(OpenFile(index, path, compressed, fd))
            if stable and self._still_named(opened):
                return opened
            for item in opened:
                item.close()
            time.sleep(0.001)
        raise LogNotFound(f"the files of log {self.path} keep changing; is a writer rotating it very fast?")

    @staticmethod
    def _still_named(opened: list[OpenFile]) -> bool:
        for item in opened:
            try:
                named = os.stat(item.path)
            except FileNotFoundError:
                return False
            held = os.fstat(item.fd)
            if (named.st_ino, named.st_dev) != (held.st_ino, held.st_dev):
                return False
        return True


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
        live = self.files.open_live()
        if live is None:
            raise LogNotFound(
                f"container '{info.container_name}' has no log at {self.files.path}; "
                "run something with 'drivebay logs capture' first"
            )
        self.live = live
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

    def _older_than_live(self) -> list[OpenFile]:
        """Rotated files older than the open live file, oldest first (it may have rotated since it was opened)."""
        rotated = self.files.open_rotated()
        live_identity = self.live.identity()
        live_stat = os.fstat(self.live.fd)
        keep: list[OpenFile] = []
        newer: list[OpenFile] = []
        for item in rotated:  # newest first
            held = os.fstat(item.fd)
            same = (held.st_ino, held.st_dev) == (live_stat.st_ino, live_stat.st_dev) or (
                item.compressed and live_identity and item.identity() == live_identity
            )
            if same:
                newer.extend(keep)
                newer.append(item)
                keep = []
                continue
            keep.append(item)
        for item in newer:
            item.close()
        return list(reversed(keep))

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

    def _read(self) -> Iterator[LogEntry]:
        older = self._older_than_live()
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
        finished = self.live.identity()
        new_live = self.files.open_live()
        if new_live is None:
            return
        old_live = self.live
        self.live, self.live_offset, self._live_rest = new_live, 0, b""
        try:
            between = self._between(finished, old_live)
        finally:
            old_live.close()
        try:
            for item in between:
                yield from self._entries(item.lines())
        finally:
            for item in between:
                item.close()

    def _between(self, finished: bytes, finished_file: OpenFile) -> list[OpenFile]:
        """Rotated files newer than ``finished_file`` and older than the (new) live file, oldest first."""
        older_than_live = self._older_than_live()  # oldest first
        held = os.fstat(finished_file.fd)
        for position in range(len(older_than_live) - 1, -1, -1):
            item = older_than_live[position]
            stat = os.fstat(item.fd)
            if (stat.st_ino, stat.st_dev) == (held.st_ino, held.st_dev) or item.identity() == finished:
                newer = older_than_live[position + 1 :]
                for done in older_than_live[: position + 1]:
                    done.close()
                return newer
        # The finished file is gone (deleted by max-file): everything still kept is newer than it.
        return older_than_live


def read_log(info: LogInfo, config: ReadConfig) -> Iterator[LogEntry]:
    """Open the log now (so a missing log raises at once) and return the entries lazily."""
    return iter(LogReader(info, config))
