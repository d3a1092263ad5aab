"""``drivebay info`` (what this root uses, like ``docker info``) and ``drivebay drivers`` (what is installed)."""

from __future__ import annotations

import argparse

from drivebay.cli.context import CliContext
from drivebay.cli.output import print_json, print_pairs, print_table
from drivebay.fs.backing import backing_filesystem
from drivebay.loader import KINDS
from drivebay.selection import probe_all


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    info = sub.add_parser(
        "info",
        help="show the drivers, root and storage driver status",
        description="Show the drivers this configuration uses, the root and its backing filesystem, "
        "and the storage driver's status (like the storage section of 'docker info'). "
        "Opens the storage driver, choosing it first when none is configured.",
    )
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=cmd_info)

    drivers = sub.add_parser(
        "drivers",
        help="list installed drivers and whether this host supports them",
        description="List every installed driver (from package metadata) with its distribution and version, "
        "and whether this host supports it with the configured root, or why not. "
        "A driver's code is imported only to probe it.",
    )
    drivers.add_argument("--kind", choices=tuple(KINDS), help="only drivers of this kind")
    drivers.add_argument("--json", action="store_true", help="print JSON")
    drivers.set_defaults(func=cmd_drivers)


def cmd_info(ctx: CliContext) -> int:
    config = ctx.config
    graph = ctx.graph()
    facts = {
        "root": str(config.root),
        "backing_filesystem": backing_filesystem(config.root),
        "config_file": str(config.source) if config.source else None,
        "debug": config.debug,
        "drivers": {
            "graph": graph.name,
            "volume": config.volume_driver,
            "network": config.network_driver,
            "log": config.log_driver,
        },
        "storage": {
            "driver": graph.name,
            "home": str(graph.home),
            "options": dict(config.storage_opts),
            "layers": len(graph.layers()),
            "status": [list(pair) for pair in graph.status()],
        },
    }
    if ctx.args.json:
        print_json(facts)
        return 0
    print_pairs(
        [
            ("Root", str(config.root)),
            ("Backing Filesystem", backing_filesystem(config.root)),
            ("Config File", str(config.source) if config.source else "none (built-in defaults)"),
            ("Storage Driver", graph.name),
        ]
    )
    print_pairs(
        [
            ("Home", str(graph.home)),
            *graph.status(),
            ("Layers", str(len(graph.layers()))),
            ("Options", ", ".join(f"{k}={v}" for k, v in sorted(config.storage_opts.items())) or "none"),
        ],
        indent=1,
    )
    print_pairs(
        [
            ("Volume Driver", config.volume_driver),
            ("Network Driver", config.network_driver),
            ("Logging Driver", config.log_driver),
            ("Debug Mode", str(config.debug).lower()),
        ]
    )
    return 0


def cmd_drivers(ctx: CliContext) -> int:
    kinds = [KINDS[ctx.args.kind]] if ctx.args.kind else list(KINDS.values())
    rows = [
        {
            "kind": installed.kind,
            "name": installed.name,
            "distribution": installed.distribution,
            "version": installed.version,
            "supported": reason is None,
            "reason": reason,
        }
        for kind in kinds
        for installed, reason in probe_all(kind, ctx.root)
    ]
    if ctx.args.json:
        print_json(rows)
        return 0
    print_table(
        ("KIND", "NAME", "DISTRIBUTION", "VERSION", "SUPPORTED"),
        [
            (
                str(r["kind"]),
                str(r["name"]),
                str(r["distribution"]),
                str(r["version"]),
                "yes" if r["supported"] else f"no: {r['reason']}",
            )
            for r in rows
        ],
    )
    return 0
