"""Log driver hooks: the contract of moby's logger (Logger, LogReader, Capability).

A log driver stores the output of a container, one message per line, and
reads it back. Core wraps every driver in :class:`drivebay.facades.log.LogDriver`,
which validates the options that apply to every driver (``mode``,
``max-buffer-size``), runs the non-blocking ring buffer, parses ``--since`` and
``--until``, and resolves container names; the driver only writes and reads its
own format. Core calls these hooks; callers never call them directly.

A log is identified by the container ID. One process writes a log at a time
(between ``log_start`` and ``log_close``); any number of processes may read it
meanwhile, following it as it grows and rotates.

Required hooks are listed in :data:`REQUIRED_HOOKS`. ``log_read`` is optional:
a driver that only ships logs elsewhere (as Docker's syslog driver does)
leaves it out and declares ``read_logs=False``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from drivebay.hookspecs import hookspec

GROUP = "drivebay.logdrivers"
PREFIX = "log_"

@dataclass(frozen=True)
class LogCapabilities:
    """What a log driver declares it supports.

    - ``read_logs``: ``log_read`` is implemented (``drivebay logs`` works).
    - ``options``: the option keys the driver accepts, for ``drivebay drivers``
      and error messages.
    """

    read_logs: bool
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class LogInfo:
    """Everything a driver may know about the log it writes or reads (moby's ``logger.Info``).

    ``container_root`` is ``<root>/containers/<container_id>``, the
    container's own directory, where a file-based driver keeps its files.
    ``options`` are the driver's ``log-opts`` (core has removed the ones it
    handles itself). ``env`` and ``labels`` are the container's environment
    and labels, which options such as ``env`` and ``labels`` pick from.
    """

    container_id: str
    container_name: str
    container_root: Path
    options: Mapping[str, str] = field(default_factory=dict)
    image_name: str = ""
    image_id: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    daemon_name: str = "drivebay"


@dataclass(frozen=True, slots=True)
class LogMessage:
    """One message to log: a line of output without its trailing newline.

    ``source`` is ``stdout`` or ``stderr``. ``timestamp_ns`` is UTC
    nanoseconds since the epoch, taken when the line was read. ``partial``
    means the line continues in the next message of the same source (the
    producer cut an overlong line); the driver then writes no newline after it.
    """

    line: bytes
    source: str
    timestamp_ns: int
    partial: bool = False


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One line read back from a log.

    ``line`` has no trailing newline. ``partial`` is true for a stored part
    that continues in the next entry, which happens only when parts are not
    joined. ``attrs`` are the extra attributes stored with the line (labels,
    env, tag).
    """

    line: str
    source: str
    timestamp_ns: int
    attrs: Mapping[str, str] = field(default_factory=dict)
    partial: bool = False


@dataclass(frozen=True)
class ReadConfig:
    """What to read (moby's ``logger.ReadConfig``).

    - ``tail``: only the last ``tail`` lines (``None`` for all, ``0`` for none
      of the existing ones); counted after ``since``/``until`` apply.
    - ``since_ns``/``until_ns``: only lines with a timestamp at or after
      ``since_ns`` and at or before ``until_ns`` (``None``: no bound).
    - ``follow``: after the existing lines, wait for new ones, across
      rotations and truncation, until the writer closes the log or a line
      after ``until_ns`` arrives.
    - ``join_partial``: join the parts of a line split by the driver into
      one entry; ``False`` returns each stored part with ``partial=True``
      for all but the last.
    - ``poll_seconds``: how often a follower looks for new data.
    """

    tail: int | None = None
    since_ns: int | None = None
    until_ns: int | None = None
    follow: bool = False
    join_partial: bool = True
    poll_seconds: float = 0.05


@dataclass(frozen=True)
class LogStats:
    """What happened to the messages given to a writer.

    ``written`` messages reached storage; ``dropped`` did not (a write
    failed, the disk was full, or the non-blocking buffer was full);
    ``last_error`` describes the last failure, if any.
    """

    written: int = 0
    dropped: int = 0
    last_error: str | None = None


@hookspec(firstresult=True)
def log_capabilities() -> LogCapabilities:  # type: ignore[empty-body]
    """Declare what the driver supports.

    Called before any other hook and at any time after. Returns a
    :class:`LogCapabilities`. Raises nothing.
    """


@hookspec(firstresult=True)
def log_probe(root: Path) -> str | None:
    """Tell whether this host can run the driver with drivebay's root at ``root``.

    Called by ``drivebay drivers``, ``drivebay info`` and before the first
    ``log_start``; ``root`` may not exist yet and is left untouched. Returns
    ``None`` when supported, else the reason in a few words (``no syslog
    socket at /dev/log``). Raises nothing.
    """


@hookspec(firstresult=True)
def log_validate_options(options: Mapping[str, str]) -> None:
    """Check the driver's ``log-opts`` without opening anything.

    Called when config is loaded and before ``log_start``, as moby's
    ``ValidateLogOpt``. ``options`` excludes ``mode`` and
    ``max-buffer-size``, which core handles. Returns nothing. Raises
    ``InvalidConfig`` naming the first unknown option or bad value and the
    accepted ones.
    """


@hookspec(firstresult=True)
def log_start(info: LogInfo) -> None:
    """Open the log of ``info.container_id`` for writing.

    Called once before the first ``log_write`` of a container, with the
    options already validated. Creates what is missing (directories, files)
    and appends to what exists. Returns nothing. Raises ``InvalidConfig`` for
    a bad option value and ``LogInUse`` when another process is writing the
    same log.
    """


@hookspec(firstresult=True)
def log_write(container_id: str, messages: Sequence[LogMessage]) -> None:
    """Store ``messages`` in order in the log of ``container_id``.

    Called with a batch of one or more messages, from one thread at a time,
    between ``log_start`` and ``log_close``. Must not block forever and must
    not raise for storage failures: a message that cannot be stored (disk
    full, I/O error) is dropped and counted in the stats ``log_close``
    returns, and a partly written line must never corrupt the lines after it.
    Returns nothing. Raises ``LogNotFound`` when the log was not started.
    """


@hookspec(firstresult=True)
def log_close(container_id: str) -> LogStats:  # type: ignore[empty-body]
    """Flush and close the log of ``container_id``; readers that follow it stop.

    Called once after the last ``log_write``. Waits for background work the
    driver started (compression of rotated files). Returns the
    :class:`LogStats` of the writer's lifetime. Raises ``LogNotFound`` when
    the log was not started.
    """


@hookspec(firstresult=True)
def log_read(info: LogInfo, config: ReadConfig) -> Iterator[LogEntry] | None:
    """Read the log of ``info.container_id`` as ``config`` says, oldest line first.

    Optional (``read_logs`` capability). Called by ``drivebay logs`` in any
    process, whether or not a writer is active. Returns an iterator of
    :class:`LogEntry`; with ``config.follow`` it blocks for new lines and
    ends when the writer closes the log (or at once when none is writing).
    Lines that are not complete records (a torn last line) are skipped,
    never raised. Raises ``LogNotFound`` when the container has no log.
    """


REQUIRED_HOOKS = (
    "log_capabilities",
    "log_probe",
    "log_validate_options",
    "log_start",
    "log_write",
    "log_close",
)
PROBE_HOOK = "log_probe"
