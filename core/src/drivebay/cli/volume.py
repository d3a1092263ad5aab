"""``drivebay volume``: create, ls, inspect, rm, mount, unmount (through the configured volume driver)."""

from __future__ import annotations

import argparse

from drivebay.cli.arguments import key_value
from drivebay.cli.context import CliContext
from drivebay.cli.output import print_table
from drivebay.facades.volume import VolumeView


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("volume", help="volumes: create, mount, remove", description="Manage volumes.")
    volumes = parser.add_subparsers(dest="volume_command", metavar="SUBCOMMAND", required=True)

    create = volumes.add_parser("create", help="create a volume", description="Create a volume.")
    create.add_argument("name", metavar="NAME")
    create.add_argument("-o", "--opt", type=key_value("type=tmpfs"), action="append", default=[], metavar="K=V",
                        help="driver option: type, device, o (repeatable, Docker's names)")
    create.set_defaults(func=cmd_create)

    ls = volumes.add_parser("ls", help="list volumes", description="List volumes.")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=cmd_ls)

    inspect = volumes.add_parser("inspect", help="show a volume", description="Show a volume.")
    inspect.add_argument("name", metavar="NAME")
    inspect.add_argument("--json", action="store_true", help="print JSON")
    inspect.set_defaults(func=cmd_inspect)

    rm = volumes.add_parser("rm", help="remove a volume", description="Remove a volume and its data.")
    rm.add_argument("name", metavar="NAME")
    rm.add_argument("-f", "--force", action="store_true", help="remove even while in use (unmounts it)")
    rm.set_defaults(func=cmd_rm)

    mount = volumes.add_parser("mount", help="use a volume; prints its mountpoint",
                               description="Take one use of a volume for caller ID; the first use mounts it.")
    mount.add_argument("name", metavar="NAME")
    mount.add_argument("--id", required=True, metavar="ID", help="caller ID (a container ID, say)")
    mount.set_defaults(func=cmd_mount)

    unmount = volumes.add_parser("unmount", help="stop using a volume",
                                 description="Drop one use of a volume by caller ID; the last use unmounts it.")
    unmount.add_argument("name", metavar="NAME")
    unmount.add_argument("--id", required=True, metavar="ID", help="caller ID given to 'volume mount'")
    unmount.set_defaults(func=cmd_unmount)


def cmd_create(ctx: CliContext) -> int:
    view = ctx.volume().create(ctx.args.name, dict(ctx.args.opt))
    print(view.volume.name)
    return 0


def _options_text(view: VolumeView) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(view.volume.options.items()))


def cmd_ls(ctx: CliContext) -> int:
    views = ctx.volume().list()
    if ctx.args.json:
        ctx.print_json([v.to_json() for v in views])
        return 0
    rows = [
        [v.driver, v.volume.name, str(v.volume.mountpoint), _options_text(v) or "-",
         str(v.to_json()["CreatedAt"]), ",".join(v.users) or "-"]
        for v in views
    ]
    print_table(["DRIVER", "VOLUME NAME", "MOUNTPOINT", "OPTIONS", "CREATED", "USERS"], rows)
    return 0


def cmd_inspect(ctx: CliContext) -> int:
    view = ctx.volume().inspect(ctx.args.name)
    if ctx.args.json:
        ctx.print_json(view.to_json())
        return 0
    for key, value in view.to_json().items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
        print(f"{key}: {value}")
    return 0


def cmd_rm(ctx: CliContext) -> int:
    ctx.volume().remove(ctx.args.name, force=ctx.args.force)
    print(ctx.args.name)
    return 0


def cmd_mount(ctx: CliContext) -> int:
    print(ctx.volume().mount(ctx.args.name, ctx.args.id))
    return 0


def cmd_unmount(ctx: CliContext) -> int:
    ctx.volume().unmount(ctx.args.name, ctx.args.id)
    return 0
