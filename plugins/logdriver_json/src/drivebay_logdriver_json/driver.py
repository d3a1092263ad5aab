"""The json-file log driver: Docker's default logger, file for file.

Logs live at ``<root>/containers/<id>/<id>-json.log`` (mode 0640), one JSON
record per line, rotated and gzipped as Docker does; Docker's own readers
read them and drivebay reads Docker's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import drivebay
from drivebay.errors import LogInUse, LogNotFound
from drivebay.hookspecs.log import LogCapabilities, LogEntry, LogInfo, LogMessage, LogStats, ReadConfig
from drivebay_logdriver_json.logfile import JsonLogFile
from drivebay_logdriver_json.options import KNOWN_OPTIONS, extra_attributes, parse_options
from drivebay_logdriver_json.reader import read_log


class JsonFileDriver:
    """Hook implementations of the json-file driver; one writer per container ID."""

    def __init__(self) -> None:
        self._writers: dict[str, JsonLogFile] = {}

    def _writer(self, container_id: str) -> JsonLogFile:
        writer = self._writers.get(container_id)
        if writer is None:
            raise LogNotFound(f"the log of container '{container_id}' is not open for writing; start it first")
        return writer

    @drivebay.hookimpl
    def log_capabilities(self) -> LogCapabilities:
        return LogCapabilities(read_logs=True, options=KNOWN_OPTIONS)

    @drivebay.hookimpl
    def log_probe(self, root: Path) -> str | None:
        return None

    @drivebay.hookimpl
    def log_validate_options(self, options: Mapping[str, str]) -> None:
        parse_options(options)

    @drivebay.hookimpl
    def log_start(self, info: LogInfo) -> None:
        options = parse_options(info.options)
        extra_attributes(info)  # a bad tag template fails here, before any file is made
        if info.container_id in self._writers:
            raise LogInUse(f"the log of container '{info.container_name}' is already open in this process")
        self._writers[info.container_id] = JsonLogFile(info, options)

    @drivebay.hookimpl
    def log_write(self, container_id: str, messages: Sequence[LogMessage]) -> None:
        self._writer(container_id).write(messages)

    @drivebay.hookimpl
    def log_close(self, container_id: str) -> LogStats:
        writer = self._writer(container_id)
        del self._writers[container_id]
        return writer.close()

    @drivebay.hookimpl
    def log_read(self, info: LogInfo, config: ReadConfig) -> Iterator[LogEntry]:
        return read_log(info, config)
