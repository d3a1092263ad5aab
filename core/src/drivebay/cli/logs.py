"""``drivebay logs``: read a container's log, or run a command and log its output (``logs capture``).

``logs NAME`` prints stdout lines to stdout and stderr lines to stderr, as
``docker logs`` does. ``logs capture NAME -- CMD ARGS...`` runs CMD with its
output going through the configured log driver and exits with CMD's code.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import BinaryIO

from drivebay.cli.context import CliContext
from drivebay.errors import UsageError
from drivebay.facades.log import capture_command
from drivebay.hookspecs.log import ReadConfig
from drivebay.timestamps import format_timestamp, parse_timestamp

CAPTURE = "capture"


def _tail(text: str) -> int | None:
    if text == "all":
        return None
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--tail takes a number of lines or 'all', not '{text}'") from exc
    if value < 0:
        return None  # as docker logs: a negative tail means all
    return value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "logs",
        help="read a container's log, or 'logs capture NAME -- CMD...' to log a command",
        description="Print the log of container NAME, or with 'capture NAME -- CMD ARGS...' run CMD and send its "
        "stdout and stderr through the configured log driver.",
        usage="drivebay logs NAME [--tail N] [--since T] [--until T] [-f] [-t]\n"
        "       drivebay logs capture NAME -- CMD ARGS...",
    )
    parser.add_argument("name", metavar="NAME", help="container name ('capture' to run a command)")
    parser.add_argument("command", nargs="*", metavar="CMD", help=argparse.SUPPRESS)
    parser.add_argument("--tail", type=_tail, default=None, metavar="N", help="only the last N lines (default all)")
    parser.add_argument("--since", metavar="T", help="only lines at or after T (10m, 2026-11-23T12:00:00Z, unix time)")
    parser.add_argument("--until", metavar="T", help="only lines at or before T (same forms as --since)")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until the writer stops")
    parser.add_argument("-t", "--timestamps", action="store_true", help="prefix each line with its time")
    parser.add_argument("--no-join", action="store_true", help="print the stored parts of split long lines as is")
    parser.set_defaults(func=cmd_logs)


def cmd_logs(ctx: CliContext) -> int:
    args = ctx.args
    if args.name == CAPTURE and args.command:
        return _capture(ctx, args.command[0], args.command[1:])
    if args.command:
        raise UsageError(
            f"unexpected arguments after '{args.name}': {' '.join(args.command)}; "
            "to log a command use 'drivebay logs capture NAME -- CMD ARGS...'"
        )
    return _read(ctx)


def _capture(ctx: CliContext, name: str, argv: list[str]) -> int:
    args = ctx.args
    if any((args.tail is not None, args.since, args.until, args.follow, args.timestamps, args.no_join)):
        raise UsageError("'logs capture' takes no reading options; put them on 'drivebay logs NAME'")
    if not argv:
        raise UsageError("'logs capture' needs a command: drivebay logs capture NAME -- CMD ARGS...")
    driver = ctx.log()
    writer = driver.open(driver.info_for(name, env=dict(os.environ)))
    try:
        code = capture_command(writer, argv)
    except (FileNotFoundError, PermissionError) as exc:
        writer.close()
        print(f"drivebay: cannot run '{argv[0]}': {exc.strerror}", file=sys.stderr)
        return 127 if isinstance(exc, FileNotFoundError) else 126
    except BaseException:
        writer.close()
        raise
    stats = writer.close()
    if stats.dropped:
        print(
            f"drivebay: {stats.dropped} of {stats.written + stats.dropped} log lines of '{name}' were dropped "
            f"({stats.last_error})",
            file=sys.stderr,
        )
    return code


def _read(ctx: CliContext) -> int:
    args = ctx.args
    config = ReadConfig(
        tail=args.tail,
        since_ns=parse_timestamp(args.since) if args.since else None,
        until_ns=parse_timestamp(args.until) if args.until else None,
        follow=args.follow,
        join_partial=not args.no_join,
    )
    driver = ctx.log()
    entries = driver.read(driver.info_for(args.name), config)
    outputs: dict[str, BinaryIO] = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
    for entry in entries:
        out = outputs.get(entry.source, sys.stdout.buffer)
        prefix = format_timestamp(entry.timestamp_ns) + " " if args.timestamps else ""
        out.write((prefix + entry.line + ("" if entry.partial else "\n")).encode("utf-8", "replace"))
        if args.follow:
            out.flush()
    sys.stdout.buffer.flush()
    sys.stderr.buffer.flush()
    return 0
