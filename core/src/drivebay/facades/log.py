"""The typed facade over a log driver: what ``drivebay logs`` and containers use instead of ``pm.hook``.

Core keeps, once for every driver:
- the options every driver shares, as Docker's daemon does: ``mode``
  (``blocking`` or ``non-blocking``) and ``max-buffer-size``; the rest goes to
  the driver's own validation;
- the non-blocking ring buffer, which never blocks the producer, drops new
  messages when full and counts them;
- ``--since``/``--until`` parsing and ``-t`` formatting, as ``docker logs``;
- running a command and copying its output line by line (``logs capture``).
"""

from __future__ import annotations

import os
import selectors
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from drivebay.errors import DriverNotSupported, InvalidConfig, UsageError
from drivebay.hookspecs.log import LogCapabilities, LogEntry, LogInfo, LogMessage, LogStats, ReadConfig
from drivebay.layers.containers import lookup_container
from drivebay.loader import KINDS, LoadedDriver, load_driver
from drivebay.names import check_restricted_name
from drivebay.state import StateDB
from drivebay.units import parse_size_option

if TYPE_CHECKING:
    from drivebay.config import Config

CORE_OPTIONS = ("mode", "max-buffer-size")
MODES = ("blocking", "non-blocking")
DEFAULT_MAX_BUFFER_SIZE = 1_000_000
"""Docker's default ring size for ``mode=non-blocking`` (1 MB)."""

MAX_PENDING_LINE = 1 << 20
"""A line longer than this is handed on in parts, so capture memory stays bounded."""



def utf8_cut(data: bytes, limit: int) -> int:
    """The largest cut at or below ``limit`` that does not split a UTF-8 character.

    Used to split overlong lines so that each part decodes on its own.
    Bytes that are not valid UTF-8 anyway are cut at ``limit``.
    """
    if len(data) <= limit:
        return len(data)
    if data[limit] & 0xC0 != 0x80:  # a character starts right at the limit
        return limit
    for start in range(limit - 1, max(limit - 4, 0), -1):
        if data[start] & 0xC0 == 0xC0:  # the lead byte of the character the limit falls in
            return start
        if data[start] & 0xC0 != 0x80:
            break
    return limit


# -- writing ------------------------------------------------------------------


class _Ring:
    """Docker's non-blocking mode: a bounded buffer drained by a thread into the driver."""

    def __init__(self, sink: LogWriter, max_bytes: int) -> None:
        self._sink = sink
        self._max_bytes = max_bytes
        self._cond = threading.Condition()
        self._queue: list[LogMessage] = []
        self._bytes = 0
        self._closed = False
        self._failure: BaseException | None = None
        self.dropped = 0
        self._thread = threading.Thread(target=self._drain, name="drivebay-log-ring", daemon=True)
        self._thread.start()

    def put(self, messages: Sequence[LogMessage]) -> None:
        with self._cond:
            for message in messages:
                size = len(message.line)
                # An empty buffer always takes one message, so an oversized line is not dropped forever.
                if self._queue and self._bytes + size > self._max_bytes:
                    self.dropped += 1
                    continue
                self._queue.append(message)
                self._bytes += size
            self._cond.notify()

    def _drain(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                batch, self._queue, self._bytes = self._queue, [], 0
                if not batch:
                    return
            try:
                self._sink.write_now(batch)
            except BaseException as exc:
                self._failure = exc
                with self._cond:
                    self.dropped += len(batch) + len(self._queue)
                    self._queue, self._bytes, self._closed = [], 0, True
                return

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()
        if self._failure is not None:
            raise self._failure


class LogWriter:
    """An open log: ``write`` batches of messages, then ``close`` for the stats."""

    def __init__(self, driver: LogDriver, info: LogInfo, mode: str, max_buffer_size: int) -> None:
        self.driver = driver
        self.info = info
        self._hook = driver.loaded.hook
        self._hook.log_start(info=info)
        self._ring = _Ring(self, max_buffer_size) if mode == "non-blocking" else None
        self._closed = False

    def write(self, messages: Sequence[LogMessage]) -> None:
        """Log ``messages``; in non-blocking mode this never waits for storage."""
        if not messages:
            return
        if self._ring is not None:
            self._ring.put(messages)
        else:
            self.write_now(messages)

    def write_now(self, messages: Sequence[LogMessage]) -> None:
        self._hook.log_write(container_id=self.info.container_id, messages=messages)

    def close(self) -> LogStats:
        """Flush everything buffered and close; returns what was written and dropped."""
        if self._closed:
            raise UsageError(f"the log of '{self.info.container_name}' is already closed")
        self._closed = True
        try:
            if self._ring is not None:
                self._ring.close()
        finally:
            stats: LogStats = self._hook.log_close(container_id=self.info.container_id)
        if self._ring is not None and self._ring.dropped:
            return LogStats(
                written=stats.written,
                dropped=stats.dropped + self._ring.dropped,
                last_error=stats.last_error or "non-blocking buffer full (raise max-buffer-size)",
            )
        return stats

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._closed:
            self.close()


class _LineSplitter:
    """Turns one stream's chunks of output into messages, one per line."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._pending = b""
        self._partial_ts: int | None = None

    def feed(self, chunk: bytes, now_ns: int) -> list[LogMessage]:
        data = self._pending + chunk if self._pending else chunk
        lines = data.split(b"\n")
        self._pending = lines.pop()
        out = []
        for line in lines:
            out.append(LogMessage(line, self.source, self._partial_ts or now_ns))
            self._partial_ts = None
        while len(self._pending) > MAX_PENDING_LINE:
            cut = utf8_cut(self._pending, MAX_PENDING_LINE)
            self._partial_ts = self._partial_ts or now_ns
            out.append(LogMessage(self._pending[:cut], self.source, self._partial_ts, partial=True))
            self._pending = self._pending[cut:]
        return out

    def finish(self, now_ns: int) -> list[LogMessage]:
        """The last line when the stream ended without a newline (Docker logs it with one)."""
        if not self._pending and self._partial_ts is None:
            return []
        message = LogMessage(self._pending, self.source, self._partial_ts or now_ns)
        self._pending, self._partial_ts = b"", None
        return [message]


def capture_command(writer: LogWriter, argv: Sequence[str]) -> int:
    """Run ``argv``, log its stdout and stderr line by line, and return its exit code.

    A command killed by a signal gives ``128 + signal``, as a shell reports it.
    Raises ``FileNotFoundError``/``PermissionError`` when the command cannot start.
    """
    proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    splitters = {proc.stdout.fileno(): _LineSplitter("stdout"), proc.stderr.fileno(): _LineSplitter("stderr")}
    with selectors.DefaultSelector() as selector:
        for fd in splitters:
            selector.register(fd, selectors.EVENT_READ)
        try:
            while selector.get_map():
                for key, _ in selector.select():
                    fd = int(key.fd)
                    chunk = os.read(fd, 1 << 16)
                    now = time.time_ns()
                    if chunk:
                        writer.write(splitters[fd].feed(chunk, now))
                    else:
                        selector.unregister(fd)
                        writer.write(splitters[fd].finish(now))
        finally:
            proc.stdout.close()
            proc.stderr.close()
            code = proc.wait()
    return 128 - code if code < 0 else code


# -- the facade -----------------------------------------------------------------


class LogDriver:
    """A loaded log driver with core's shared options, ring buffer and reading helpers."""

    def __init__(
        self, loaded: LoadedDriver, root: Path, options: Mapping[str, str], state: StateDB | None = None
    ) -> None:
        self.loaded = loaded
        self.name = loaded.name
        self.root = root
        self.state = state
        self._hook = loaded.hook
        self.capabilities: LogCapabilities = self._hook.log_capabilities()
        reason = self._hook.log_probe(root=root)
        if reason is not None:
            raise DriverNotSupported(self.name, reason, "choose another log-driver")
        self.mode, self.max_buffer_size, self.options = self.split_options(options)
        self._hook.log_validate_options(options=self.options)

    def split_options(self, options: Mapping[str, str]) -> tuple[str, int, dict[str, str]]:
        """Take out the options core handles; returns ``(mode, max_buffer_size, driver_options)``."""
        driver_options = {k: str(v) for k, v in options.items() if k not in CORE_OPTIONS}
        mode = str(options.get("mode", "blocking"))
        if mode not in MODES:
            raise InvalidConfig(f"log-opt mode={mode!r} is not valid; use one of: {', '.join(MODES)}")
        size_text = options.get("max-buffer-size")
        if size_text is None:
            return mode, DEFAULT_MAX_BUFFER_SIZE, driver_options
        if mode != "non-blocking":
            raise InvalidConfig("log-opt max-buffer-size is only supported with mode=non-blocking")
        return mode, parse_size_option(str(size_text), "log-opt max-buffer-size"), driver_options

    def info_for(
        self,
        name: str,
        *,
        container_id: str | None = None,
        env: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        image_name: str = "",
        image_id: str = "",
        options: Mapping[str, str] | None = None,
    ) -> LogInfo:
        """The :class:`LogInfo` of container ``name``.

        Its ID is ``container_id``, else that of the layer store's container of
        that name, else the name itself.
        """
        check_restricted_name(name, "container")
        known = None if container_id else self._container(name)
        cid = container_id or (known[0] if known else name)
        image_id = image_id or (known[1] if known else "")
        driver_options = self.options
        if options is not None:
            _, _, driver_options = self.split_options(options)
            self._hook.log_validate_options(options=driver_options)
        return LogInfo(
            container_id=cid,
            container_name=name,
            container_root=self.root / "containers" / cid,
            options=driver_options,
            image_name=image_name,
            image_id=image_id,
            env=dict(env or {}),
            labels=dict(labels or {}),
        )

    def _container(self, name: str) -> tuple[str, str] | None:
        """``(id, image ID)`` of the container named (or with the ID) ``name``, if the layer store has it.

        Logs of containers live under their ID, as Docker keeps them; a name no
        container has (``logs capture`` of a plain command) is its own ID.
        """
        if self.state is None:
            return None
        found = lookup_container(self.state, name)
        return (found.id, found.image_id) if found else None

    def open(self, info: LogInfo) -> LogWriter:
        """Start writing the log of ``info``; use as a context manager or call ``close``."""
        return LogWriter(self, info, self.mode, self.max_buffer_size)

    def read(self, info: LogInfo, config: ReadConfig) -> Iterator[LogEntry]:
        """Read the log of ``info`` (see :class:`ReadConfig`)."""
        if not self.capabilities.read_logs:
            raise DriverNotSupported(
                self.name, "it does not read logs back", "use log-driver json-file to read logs with drivebay"
            )
        entries: Iterator[LogEntry] = self._hook.log_read(info=info, config=config)
        return entries


def open_log_driver(config: Config, state: StateDB) -> LogDriver:
    """Load and check the configured log driver (config key ``log-driver``)."""
    loaded = load_driver(KINDS["log"], config.log_driver, echo_timings=config.debug)
    return LogDriver(loaded, Path(config.root), dict(config.log_opts or {}), state)
