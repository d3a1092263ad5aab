"""Entry point of ``drivebay``: global options, command registration, exit codes.

Each command module in :data:`COMMAND_MODULES` has ``register(subparsers)``,
which adds its parsers and sets ``func`` to a handler ``(ctx) -> int``. A
command line naming a known command imports only that command's module:
importing all of them (rich, the bench, the Docker plugin server) costs more
start-up time than a small ``image load`` takes.
Exit codes: 0 success, 1 a drivebay error or an OS error such as a missing
input file (one line on stderr), 2 usage.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from drivebay import __version__
from drivebay.cli.context import CliContext
from drivebay.errors import DrivebayError

COMMAND_MODULES = (
    "info",
    "graph",
    "bench",
    "image",
    "container",
    "network",
    "volume",
    "logs",
    "conformance",
    "snapshotter",
    "plugin",
)
COMMAND_MODULE_OF = {name: name for name in COMMAND_MODULES} | {"drivers": "info"}
"""The module registering each top-level command."""


def _add_global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="FILE", help="config file (default $DRIVEBAY_CONFIG, else /etc/drivebay/config.yaml)"
    )
    parser.add_argument("--root", metavar="DIR", help="where drivebay stores everything (config key 'root')")
    parser.add_argument(
        "-s", "--storage-driver", metavar="NAME", help="graph driver to use (config key 'storage-driver')"
    )
    parser.add_argument(
        "--storage-opt", metavar="K=V", action="append", default=[], help="storage driver option (repeatable)"
    )
    parser.add_argument("--debug", action="store_true", help="print every driver call with its duration")


class _CommandFinder(argparse.ArgumentParser):
    """Finds the command word after the global options; says nothing on bad input (the real parser will)."""

    def error(self, message: str) -> NoReturn:
        raise ValueError(message)


def _modules_for(argv: Sequence[str]) -> Sequence[str]:
    """The one module registering the command ``argv`` names, or all of them (for help and usage errors)."""
    finder = _CommandFinder(add_help=False)
    _add_global_options(finder)
    finder.add_argument("command", nargs="?")
    try:
        known, _rest = finder.parse_known_args(argv)
    except ValueError:
        return COMMAND_MODULES
    module = COMMAND_MODULE_OF.get(known.command or "")
    return (module,) if module else COMMAND_MODULES


def build_parser(modules: Sequence[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    """The ``drivebay`` parser with the commands of ``modules`` (default: every command)."""
    parser = argparse.ArgumentParser(
        prog="drivebay", description="Pluggable container storage, volume, network and log drivers."
    )
    parser.add_argument("--version", action="version", version=f"drivebay {__version__}")
    _add_global_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in modules:
        importlib.import_module(f"drivebay.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    as_command = argv is None
    if as_command:
        # This process is one drivebay command, and what importing the command's modules makes lives until it
        # exits: collecting while importing frees nothing, and once frozen it is not walked again, neither by
        # the command's collections nor by the interpreter's final ones. Together ~20 ms of a small command.
        # Callers passing argv (tests, other programs) keep their collector as it was.
        gc.disable()
    arguments = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_modules_for(arguments))
    args = parser.parse_args(arguments)
    if as_command:
        gc.freeze()
        gc.enable()
    ctx = CliContext(args)
    try:
        return int(args.func(ctx) or 0)
    except DrivebayError as exc:
        print(f"drivebay: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        # A file named on the command line that cannot be opened or written is the user's to fix, not a crash;
        # --debug keeps the traceback for the cases that are drivebay's own.
        if args.debug:
            traceback.print_exc()
        where = f" {exc.filename}" if exc.filename else ""
        print(f"drivebay:{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("drivebay: interrupted", file=sys.stderr)
        return 130
    finally:
        ctx.close()


if __name__ == "__main__":
    sys.exit(main())
