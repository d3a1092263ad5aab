"""``drivebay container``: create, mount, unmount, diff, commit, export, rm, ls."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from drivebay.cli.context import CliContext
from drivebay.cli.image import ago, stores
from drivebay.cli.output import print_table


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "container", help="container layers: create, mount, diff, commit", description="Manage container layers."
    )
    containers = parser.add_subparsers(dest="container_command", metavar="SUBCOMMAND", required=True)

    def add(name: str, help_text: str, func: object, *, image: bool = False) -> argparse.ArgumentParser:
        command = containers.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        command.add_argument("name", metavar="NAME", help="container name or ID")
        if image:
            command.add_argument("image", metavar="IMAGE", help="image tag or ID")
        command.set_defaults(func=func)
        return command

    add("create", "make a read-write layer over an init layer over the image", cmd_create, image=True)
    add("mount", "mount the container's filesystem and print its path (refcounted)", cmd_mount)
    add("unmount", "release one mount of the container's filesystem", cmd_unmount)
    add("diff", "list changed paths as A/C/D lines, like docker diff", cmd_diff)
    commit = add("commit", "store the container's changes as a new image", cmd_commit)
    commit.add_argument("ref", metavar="REF", help="tag for the new image")
    export = add("export", "write the container's flattened filesystem as a tar", cmd_export)
    export.add_argument("-o", "--output", required=True, type=Path, metavar="FILE", help="tar to write")
    add("rm", "remove the container and its layers", cmd_rm)
    ls = containers.add_parser("ls", help="list containers", description="List containers.")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=cmd_ls)


def cmd_create(ctx: CliContext) -> int:
    print(stores(ctx).containers.create(ctx.args.name, ctx.args.image).id)
    return 0


def cmd_mount(ctx: CliContext) -> int:
    print(stores(ctx).containers.mount(ctx.args.name))
    return 0


def cmd_unmount(ctx: CliContext) -> int:
    stores(ctx).containers.unmount(ctx.args.name)
    return 0


def cmd_diff(ctx: CliContext) -> int:
    for change in stores(ctx).containers.changes(ctx.args.name):
        print(change)
    return 0


def cmd_commit(ctx: CliContext) -> int:
    print(stores(ctx).containers.commit(ctx.args.name, ctx.args.ref).id)
    return 0


def cmd_export(ctx: CliContext) -> int:
    containers = stores(ctx).containers
    output: Path = ctx.args.output
    partial = output.with_name(f".{output.name}.{os.getpid()}.part")
    try:
        with open(partial, "wb") as out:
            containers.export(ctx.args.name, out)
        os.replace(partial, output)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return 0


def cmd_rm(ctx: CliContext) -> int:
    stores(ctx).containers.remove(ctx.args.name)
    print(ctx.args.name)
    return 0


def cmd_ls(ctx: CliContext) -> int:
    store = stores(ctx)
    rows = []
    for container in store.containers.containers():
        image = store.images.resolve(container.image_id)
        rows.append(
            {
                "id": container.id,
                "name": container.name,
                "image": image.tags[0] if image.tags else image.id,
                "image_id": image.id,
                "created": container.created,
                "mounts": store.containers.mount_count(container),
            }
        )
    if ctx.args.json:
        ctx.print_json(rows)
        return 0
    print_table(
        ("CONTAINER ID", "IMAGE", "CREATED", "MOUNTS", "NAME"),
        [
            (str(r["id"])[:12], str(r["image"]), ago(float(r["created"])), str(r["mounts"]), str(r["name"]))  # type: ignore[arg-type]
            for r in rows
        ],
    )
    return 0
