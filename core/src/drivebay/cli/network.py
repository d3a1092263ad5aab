"""``drivebay network``: create, ls, inspect, rm, connect, disconnect.

Everything happens in the network namespace drivebay runs in ("the host");
run it under ``ip netns exec NAME`` to work in another one.
"""

from __future__ import annotations

import argparse
import ipaddress
from pathlib import Path

from drivebay.cli.arguments import key_value
from drivebay.cli.context import CliContext
from drivebay.cli.output import print_table
from drivebay.errors import NetworkNotFound
from drivebay.hookspecs.network import PortMapping


def _ipv4(text: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"'{text}' is not an IPv4 address") from exc


def _subnet(text: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"'{text}' is not an IPv4 subnet in CIDR form (10.1.0.0/24)") from exc


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "network",
        help="networks: create, connect namespaces, publish ports",
        description="Manage networks of the configured network driver.",
    )
    networks = parser.add_subparsers(dest="network_command", metavar="SUBCOMMAND", required=True)

    create = networks.add_parser("create", help="create a network", description="Create a network.")
    create.add_argument("name", metavar="NAME")
    create.add_argument("--subnet", type=_subnet, metavar="CIDR", help="subnet (default: a free Docker default pool)")
    create.add_argument("--gateway", type=_ipv4, metavar="IP", help="gateway address (default: first in subnet)")
    create.add_argument(
        "-o",
        "--opt",
        type=key_value("com.docker.network.bridge.name=br-web"),
        action="append",
        default=[],
        metavar="K=V",
        help="driver option, Docker's names (repeatable)",
    )
    create.set_defaults(func=cmd_create)

    ls = networks.add_parser("ls", help="list networks", description="List networks.")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=cmd_ls)

    inspect = networks.add_parser("inspect", help="show a network as JSON", description="Show a network as JSON.")
    inspect.add_argument("name", metavar="NAME")
    inspect.add_argument("--json", action="store_true", help="print JSON (the only format; accepted for scripts)")
    inspect.set_defaults(func=cmd_inspect)

    rm = networks.add_parser("rm", help="remove a network", description="Remove a network and its bridge.")
    rm.add_argument("name", metavar="NAME")
    rm.add_argument("-f", "--force", action="store_true", help="disconnect connected endpoints first")
    rm.set_defaults(func=cmd_rm)

    connect = networks.add_parser(
        "connect", help="connect a network namespace", description="Connect a network namespace to a network."
    )
    connect.add_argument("name", metavar="NAME")
    connect.add_argument("--netns", required=True, type=Path, metavar="PATH", help="namespace (/run/netns/X)")
    connect.add_argument("--ip", type=_ipv4, metavar="IP", help="address to use (default: next free)")
    connect.add_argument(
        "-p",
        "--publish",
        action="append",
        default=[],
        metavar="HOSTPORT:CONTAINERPORT[/PROTO]",
        help="publish a port on the host (repeatable)",
    )
    connect.set_defaults(func=cmd_connect)

    disconnect = networks.add_parser(
        "disconnect",
        help="disconnect a network namespace",
        description="Disconnect a network namespace from a network.",
    )
    disconnect.add_argument("name", metavar="NAME")
    disconnect.add_argument("--netns", required=True, type=Path, metavar="PATH")
    disconnect.set_defaults(func=cmd_disconnect)


def cmd_create(ctx: CliContext) -> int:
    a = ctx.args
    network = ctx.network().create_network(a.name, a.subnet, a.gateway, dict(a.opt))
    print(network.id)
    return 0


def cmd_ls(ctx: CliContext) -> int:
    records = ctx.network().networks()
    if ctx.args.json:
        ctx.print_json([r.to_json() for r in records])
        return 0
    print_table(
        ("NETWORK ID", "NAME", "DRIVER", "SUBNET", "GATEWAY", "BRIDGE", "ENDPOINTS"),
        [
            (
                r.network.id[:12],
                r.network.name,
                r.driver,
                str(r.network.subnet),
                str(r.network.gateway),
                r.network.driver_info.get("bridge", ""),
                str(len(r.endpoints)),
            )
            for r in records
        ],
    )
    return 0


def cmd_inspect(ctx: CliContext) -> int:
    ctx.print_json(ctx.network().inspect(ctx.args.name))
    return 0


def cmd_rm(ctx: CliContext) -> int:
    ctx.network().remove_network(ctx.args.name, force=ctx.args.force)
    print(ctx.args.name)
    return 0


def cmd_connect(ctx: CliContext) -> int:
    a = ctx.args
    ports = [PortMapping.parse(p) for p in a.publish]
    endpoint = ctx.network().connect(a.name, a.netns.absolute(), a.ip, ports)
    print(f"{endpoint.ifname} {endpoint.address}")
    return 0


def cmd_disconnect(ctx: CliContext) -> int:
    a = ctx.args
    if not ctx.network().disconnect(a.name, a.netns.absolute()):
        raise NetworkNotFound(
            f"'{a.netns}' is not connected to network '{a.name}'; see 'drivebay network inspect {a.name}'"
        )
    return 0
