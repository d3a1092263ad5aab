"""``LogDriver.*``: a drivebay log driver served to Docker (``docker run --log-driver PLUGIN``).

Docker's requests and answers, exactly (moby ``daemon/logger/plugin.go`` and
``proxy.go``): StartLogging ``{File, Info}`` names a FIFO dockerd writes
framed ``LogEntry`` records to (:mod:`drivebay.dockerplugin.logentry`);
StopLogging ``{File}``; Capabilities answers ``{Cap: {ReadLogs}}``; ReadLogs
``{Info, Config: {Since, Until, Tail, Follow}}`` answers a stream of framed
entries, so ``docker logs`` reads what the driver stored.

Each FIFO is read by a thread of its own into the facade's writer (one per
container, shared by the FIFOs of that container); parts of a
line Docker split (``partial_log_metadata``) reach the driver as partial
messages, so it stores them as one line, as Docker's own json-file does.
dockerd calls StopLogging before it closes its end, so the reader finishes at
end of file, not at StopLogging; ReadLogs waits for such a reader to finish
before it reads (and drivebay's own client, which closes first, asks
StopLogging to wait with ``Drain``), so ``docker logs`` right after a container exits sees every
line. ReadLogs sends each whole line with its newline, because dockerd
writes the lines a plugin returns to ``docker logs`` exactly as they come.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from drivebay.dockerplugin.logentry import WireLogEntry, read_frame, write_frame
from drivebay.dockerplugin.server import Endpoint, PluginRequest, Streamed
from drivebay.errors import PluginError, UsageError
from drivebay.facades.log import LogDriver, LogWriter
from drivebay.hookspecs.log import LogInfo, LogMessage, ReadConfig
from drivebay.timestamps import parse_timestamp

LOG = logging.getLogger("drivebay.dockerplugin")

GO_ZERO_TIME = "0001-01-01T00:00:00Z"
"""How Go encodes an unset ``time.Time``: no bound."""

DRAIN_WAIT_SECONDS = 30.0
"""How long ReadLogs waits for a stopped logger to store what is still in its FIFO."""


def _pairs(items: Any) -> dict[str, str]:
    """Docker's ``["K=V", ...]`` environment as a mapping."""
    pairs = {}
    for item in items or []:
        key, _, value = str(item).partition("=")
        pairs[key] = value
    return pairs


def log_info(driver: LogDriver, info: Mapping[str, Any]) -> LogInfo:
    """The :class:`LogInfo` of Docker's ``logger.Info``; the container's name loses Docker's leading '/'."""
    container_id = str(info.get("ContainerID") or "")
    if not container_id:
        raise PluginError("the log request's Info has no ContainerID")
    name = str(info.get("ContainerName") or container_id).lstrip("/")
    return driver.info_for(
        name,
        container_id=container_id,
        env=_pairs(info.get("ContainerEnv")),
        labels={str(k): str(v) for k, v in (info.get("ContainerLabels") or {}).items()},
        image_name=str(info.get("ContainerImageName") or ""),
        image_id=str(info.get("ContainerImageID") or ""),
        options={str(k): str(v) for k, v in (info.get("Config") or {}).items()},
    )


def _time_bound(value: Any, key: str) -> int | None:
    if not value or value == GO_ZERO_TIME:
        return None
    try:
        return parse_timestamp(str(value))
    except UsageError as exc:
        raise PluginError(f"LogDriver.ReadLogs: Config.{key} {value!r} is not an RFC 3339 time") from exc


def read_config(config: Mapping[str, Any]) -> ReadConfig:
    """drivebay's :class:`ReadConfig` of Docker's ``logger.ReadConfig`` (a negative Tail means all)."""
    tail = config.get("Tail")
    return ReadConfig(
        tail=None if tail is None or int(tail) < 0 else int(tail),
        since_ns=_time_bound(config.get("Since"), "Since"),
        until_ns=_time_bound(config.get("Until"), "Until"),
        follow=bool(config.get("Follow")),
    )


@dataclass
class _FifoReader:
    """The thread copying one FIFO into the driver."""

    fifo: Path
    info: LogInfo
    thread: threading.Thread | None = None
    done: threading.Event = field(default_factory=threading.Event)
    stopping: bool = False
    failure: BaseException | None = None


@dataclass
class _SharedWriter:
    """One container's open log, shared by every FIFO dockerd opened for it.

    dockerd starts a second logger (a second FIFO) for the same container to
    answer ``docker logs``; it writes nothing, but the driver allows one writer
    per log, so both FIFOs feed the writer the first one opened.
    """

    writer: LogWriter
    users: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class LogEndpoints:
    """Serves one log driver; one reader thread per logging container."""

    implements: tuple[str, ...] = ("LogDriver",)

    def __init__(self, driver: LogDriver) -> None:
        self.driver = driver
        self._lock = threading.Lock()
        self._readers: dict[str, _FifoReader] = {}
        self._writers: dict[str, _SharedWriter] = {}

    def endpoints(self) -> dict[str, Endpoint]:
        return {
            "LogDriver.StartLogging": self.start_logging,
            "LogDriver.StopLogging": self.stop_logging,
            "LogDriver.Capabilities": self.capabilities,
            "LogDriver.ReadLogs": self.read_logs,
        }

    def capabilities(self, request: PluginRequest) -> dict[str, Any]:
        return {"Cap": {"ReadLogs": self.driver.capabilities.read_logs}}

    def start_logging(self, request: PluginRequest) -> dict[str, Any]:
        body = request.json()
        fifo = Path(str(body.get("File") or ""))
        if not fifo.is_absolute():
            raise PluginError("LogDriver.StartLogging needs the absolute path of a FIFO in 'File'")
        info = log_info(self.driver, body.get("Info") or {})
        reader = _FifoReader(fifo, info)
        with self._lock:
            if str(fifo) in self._readers:
                raise PluginError(f"LogDriver.StartLogging: {fifo} is already being read")
            shared = self._writers.get(info.container_id)
            if shared is None:
                shared = _SharedWriter(self.driver.open(info))
                self._writers[info.container_id] = shared
            shared.users += 1
            self._readers[str(fifo)] = reader
        reader.thread = threading.Thread(
            target=self._copy, args=(reader, shared), name=f"log {info.container_id[:12]}", daemon=True
        )
        reader.thread.start()
        return {}

    def _copy(self, reader: _FifoReader, shared: _SharedWriter) -> None:
        try:
            with open(reader.fifo, "rb", buffering=1 << 16) as stream:
                while (entry := read_frame(stream)) is not None:
                    message = LogMessage(entry.line, entry.source or "stdout", entry.time_nano, partial=entry.continues)
                    with shared.lock:
                        shared.writer.write([message])
        except BaseException as exc:
            # Reported by StopLogging; the thread has nobody else to tell.
            reader.failure = exc
            LOG.error("log of %s: reading %s failed: %s", reader.info.container_id[:12], reader.fifo, exc)
        finally:
            try:
                with self._lock:
                    shared.users -= 1
                    last = shared.users == 0
                    if last:
                        del self._writers[reader.info.container_id]
                if last:
                    stats = shared.writer.close()
                    if stats.dropped:
                        LOG.warning("log of %s: %d message(s) dropped: %s", reader.info.container_id[:12],
                                    stats.dropped, stats.last_error)
            finally:
                with self._lock:
                    self._readers.pop(str(reader.fifo), None)
                reader.done.set()

    def stop_logging(self, request: PluginRequest) -> dict[str, Any]:
        body = request.json()
        fifo = str(body.get("File") or "")
        with self._lock:
            reader = self._readers.get(fifo)
        if reader is None:
            return {}
        reader.stopping = True
        if body.get("Drain"):
            # drivebay's client closed its end first and waits until everything is stored.
            reader.done.wait(DRAIN_WAIT_SECONDS)
        if reader.failure is not None:
            raise PluginError(f"the log of {reader.info.container_id[:12]} failed: {reader.failure}")
        return {}

    def _wait_for_stopping(self, container_id: str) -> None:
        with self._lock:
            readers = [r for r in self._readers.values() if r.info.container_id == container_id and r.stopping]
        for reader in readers:
            reader.done.wait(DRAIN_WAIT_SECONDS)

    def read_logs(self, request: PluginRequest) -> Streamed:
        body = request.json()
        info = log_info(self.driver, body.get("Info") or {})
        config = read_config(body.get("Config") or {})
        self._wait_for_stopping(info.container_id)
        entries = self.driver.read(info, config)

        def write(out: BinaryIO) -> None:
            for entry in entries:
                line = entry.line.encode("utf-8", "surrogateescape")
                # dockerd prints a plugin's lines as they come: a whole line carries its newline, as in json-file.
                if not entry.partial:
                    line += b"\n"
                write_frame(out, WireLogEntry(entry.source, entry.timestamp_ns, line, entry.partial))
                if config.follow:
                    out.flush()

        return Streamed(write, "application/x-json-stream")

    def close(self) -> None:
        """Unblock readers still waiting for dockerd to open their FIFO, and let them finish."""
        with self._lock:
            readers = list(self._readers.values())
        for reader in readers:
            try:
                # Opening the write end and closing it gives a reader still in open() an end of file.
                os.close(os.open(reader.fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError as exc:
                LOG.debug("log FIFO %s: %s", reader.fifo, exc)
            if reader.thread is not None:
                reader.thread.join(DRAIN_WAIT_SECONDS)
