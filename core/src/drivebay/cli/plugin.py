"""``drivebay plugin``: serve a driver to Docker over its plugin protocol, or write a managed plugin's config.json."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from drivebay.cli.context import CliContext
from drivebay.dockerplugin.manifest import plugin_config
from drivebay.dockerplugin.server import PluginServer
from drivebay.dockerplugin.serving import (
    KINDS,
    default_plugin_name,
    default_socket,
    open_endpoint_set,
    serve_until_signalled,
)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", required=True, choices=KINDS, help="the driver's kind")
    parser.add_argument("--driver", required=True, metavar="NAME", help="an installed driver of that kind")
    parser.add_argument("--name", metavar="PLUGIN", help="the plugin name Docker uses (default drivebay-DRIVER)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "plugin", help="Docker plugins: serve a driver to dockerd", description="Serve drivebay drivers to Docker."
    )
    plugins = parser.add_subparsers(dest="plugin_command", metavar="SUBCOMMAND", required=True)

    serve = plugins.add_parser(
        "serve",
        help="serve a driver over Docker's plugin protocol",
        description="Serve an installed driver as a legacy Docker plugin until SIGTERM or SIGINT.",
    )
    _common(serve)
    serve.add_argument("--socket", metavar="PATH", type=Path,
                       help="unix socket to listen on (default /run/docker/plugins/PLUGIN.sock, where dockerd looks)")
    serve.set_defaults(func=cmd_serve)

    manifest = plugins.add_parser(
        "manifest",
        help="print a managed plugin's config.json",
        description="Print the config.json that packages the driver as a managed (v2) Docker plugin.",
    )
    _common(manifest)
    manifest.add_argument("-o", "--output", metavar="FILE", type=Path, help="write to FILE instead of stdout")
    manifest.set_defaults(func=cmd_manifest)


def cmd_serve(ctx: CliContext) -> int:
    args = ctx.args
    name = args.name or default_plugin_name(args.driver)
    endpoints = open_endpoint_set(args.kind, args.driver, ctx.config, ctx.state)
    try:
        server = PluginServer(args.socket or default_socket(name), [endpoints])
    except BaseException:
        endpoints.close()
        raise
    serve_until_signalled(server)
    return 0


def cmd_manifest(ctx: CliContext) -> int:
    args = ctx.args
    text = json.dumps(plugin_config(args.kind, args.driver, args.name or default_plugin_name(args.driver)), indent=2)
    if args.output:
        args.output.write_text(text + "\n", encoding="utf-8")
    else:
        sys.stdout.write(text + "\n")
    return 0
