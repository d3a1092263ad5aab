"""``drivebay snapshotter serve``: a graph driver as a containerd proxy snapshotter (see docs/containerd.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from drivebay.cli.context import CliContext
from drivebay.errors import DriverNotSupported


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "snapshotter",
        help="serve a graph driver to containerd",
        description="Serve a graph driver as a containerd proxy snapshotter (gRPC on a unix socket).",
    )
    commands = parser.add_subparsers(dest="snapshotter_command", metavar="SUBCOMMAND", required=True)
    serve = commands.add_parser(
        "serve",
        help="serve until SIGTERM or SIGINT",
        description="Serve containerd.services.snapshots.v1.Snapshots over the graph driver until SIGTERM or "
        "SIGINT. Point containerd at it with [proxy_plugins.NAME] type = \"snapshot\" address = \"SOCKET\".",
    )
    serve.add_argument("--driver", dest="storage_driver", metavar="NAME", required=True, help="graph driver to serve")
    serve.add_argument("--socket", metavar="PATH", required=True, type=Path, help="unix socket to listen on")
    # SUPPRESS keeps the global --root when this one is not given.
    serve.add_argument("--root", metavar="DIR", default=argparse.SUPPRESS, help="drivebay root (as the global --root)")
    serve.set_defaults(func=cmd_serve)


def cmd_serve(ctx: CliContext) -> int:
    try:
        from drivebay.snapshotter.service import serve_until_signalled
        from drivebay.snapshotter.snapshots import Snapshotter
    except ImportError as exc:
        raise DriverNotSupported(
            "snapshotter", f"cannot import {exc.name}", "install it with: pip install 'drivebay[snapshotter]'"
        ) from exc
    serve_until_signalled(Snapshotter(ctx.graph()), ctx.args.socket)
    return 0
