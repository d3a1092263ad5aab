"""``drivebay image``: load, save, import, ls, rm, history (like the docker commands of the same names)."""

from __future__ import annotations

import argparse
import time
from calendar import timegm
from pathlib import Path

from drivebay.cli.context import CliContext
from drivebay.cli.output import human_size, print_table
from drivebay.layers import Stores, open_stores
from drivebay.layers.progress import load_progress

# drivebay.layers.transfer (the archive readers and writers) is imported by the commands that move archives
# only: listing and removing images would pay its import for nothing. Its FORMATS, spelled out here for the
# parser, is checked to match by core/tests/test_cli_startup.py.
FORMATS = ("docker", "oci")


def stores(ctx: CliContext) -> Stores:
    """The stores of the configured root and graph driver (opening them finishes crashed work)."""
    return open_stores(ctx.root, ctx.state, ctx.graph())


def parse_created(created: str) -> float | None:
    """Seconds since the epoch of an RFC 3339 ``created`` (nanoseconds dropped), or ``None``."""
    try:
        return float(timegm(time.strptime(created[:19], "%Y-%m-%dT%H:%M:%S")))
    except ValueError:
        return None


def ago(timestamp: float | None) -> str:
    """Docker's ``CREATED`` column: ``5 minutes ago``."""
    if timestamp is None:
        return "N/A"
    seconds = max(0.0, time.time() - timestamp)
    for unit, length in (
        ("year", 31536000),
        ("month", 2592000),
        ("week", 604800),
        ("day", 86400),
        ("hour", 3600),
        ("minute", 60),
        ("second", 1),
    ):
        if seconds >= length:
            count = int(seconds // length)
            return f"{count} {unit}{'s' if count > 1 else ''} ago"
    return "Less than a second ago"


def _truncate(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("image", help="load, save, import and list images", description="Manage images.")
    images = parser.add_subparsers(dest="image_command", metavar="SUBCOMMAND", required=True)

    load = images.add_parser(
        "load",
        help="load images from a docker save or OCI archive",
        description="Load every image of a "
        "'docker save' tarball or an OCI image layout tarball (layers plain, gzip or zstd).",
    )
    load.add_argument("-i", "--input", required=True, type=Path, metavar="FILE", help="archive to read")
    load.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    load.set_defaults(func=cmd_load)

    save = images.add_parser(
        "save", help="save images to an archive", description="Write images to a tarball that 'docker load' accepts."
    )
    save.add_argument("refs", nargs="+", metavar="REF", help="image tag or ID")
    save.add_argument("-o", "--output", required=True, type=Path, metavar="FILE", help="archive to write")
    save.add_argument("--format", choices=FORMATS, default="docker", help="archive layout (default: docker)")
    save.set_defaults(func=cmd_save)

    imp = images.add_parser(
        "import",
        help="make an image from a root filesystem tar",
        description="Like 'docker import': one layer "
        "holding the tar's files, a minimal config and the history entry 'Imported from -'.",
    )
    imp.add_argument("-i", "--input", required=True, type=Path, metavar="ROOTFS.tar", help="root filesystem tar")
    imp.add_argument("ref", nargs="?", metavar="REF", help="tag for the new image")
    imp.set_defaults(func=cmd_import)

    ls = images.add_parser("ls", help="list images", description="List images with tags, IDs, age and size.")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.add_argument("-q", "--quiet", action="store_true", help="print image IDs only")
    ls.set_defaults(func=cmd_ls)

    rm = images.add_parser(
        "rm",
        help="remove images",
        description="Untag images and remove those left without tags, with their "
        "unused layers. An image a container uses cannot be removed.",
    )
    rm.add_argument("refs", nargs="+", metavar="REF", help="image tag or ID")
    rm.set_defaults(func=cmd_rm)

    history = images.add_parser(
        "history",
        help="show an image's layers",
        description="Like 'docker history': one line per history "
        "entry, newest first, with the layer size and the command that made it.",
    )
    history.add_argument("ref", metavar="REF", help="image tag or ID")
    history.add_argument("--json", action="store_true", help="print JSON")
    history.add_argument("--no-trunc", action="store_true", help="do not shorten IDs and commands")
    history.set_defaults(func=cmd_history)


def cmd_load(ctx: CliContext) -> int:
    from drivebay.layers.transfer import load_archive

    store = stores(ctx)
    progress = load_progress(ctx.args.quiet)
    try:
        loaded = load_archive(ctx.args.input, store.images, progress)
    finally:
        progress.close()
    for item in loaded:
        for tag in item.tags:
            print(f"Loaded image: {tag}")
        if not item.tags:
            print(f"Loaded image ID: {item.image.id}")
    return 0


def cmd_save(ctx: CliContext) -> int:
    from drivebay.layers.transfer import save_images

    save_images(ctx.args.refs, ctx.args.output, ctx.args.format, stores(ctx).images)
    return 0


def cmd_import(ctx: CliContext) -> int:
    from drivebay.layers.transfer import import_rootfs

    image = import_rootfs(ctx.args.input, ctx.args.ref, stores(ctx).images)
    print(image.id)
    return 0


def _image_rows(store: Stores) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for image in store.images.images():
        created = str(image.parsed.get("created", ""))
        common = {
            "id": image.id,
            "created": created,
            "size": store.images.size(image),
            "layers": len(image.diff_ids),
        }
        for tag in image.tags or ("<none>:<none>",):
            repository, _, name = tag.rpartition(":")
            rows.append({"repository": repository, "tag": name, **common})
    return rows


def cmd_ls(ctx: CliContext) -> int:
    rows = _image_rows(stores(ctx))
    if ctx.args.json:
        ctx.print_json(rows)
    elif ctx.args.quiet:
        for image_id in dict.fromkeys(str(r["id"]) for r in rows):
            print(image_id.removeprefix("sha256:")[:12])
    else:
        print_table(
            ("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"),
            [
                (
                    str(r["repository"]),
                    str(r["tag"]),
                    str(r["id"]).removeprefix("sha256:")[:12],
                    ago(parse_created(str(r["created"]))),
                    human_size(int(r["size"])),  # type: ignore[call-overload]
                )
                for r in rows
            ],
        )
    return 0


def cmd_rm(ctx: CliContext) -> int:
    images = stores(ctx).images
    for ref in ctx.args.refs:
        for line in images.remove(ref):
            print(line)
    return 0


def cmd_history(ctx: CliContext) -> int:
    store = stores(ctx)
    entries = store.images.history(store.images.resolve(ctx.args.ref))
    if ctx.args.json:
        ctx.print_json(
            [
                {
                    "id": e.image_id or "<missing>",
                    "created": e.created,
                    "created_by": e.created_by,
                    "size": e.size,
                    "comment": e.comment,
                }
                for e in entries
            ]
        )
        return 0
    no_trunc = ctx.args.no_trunc
    print_table(
        ("IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"),
        [
            (
                (e.image_id if no_trunc else e.image_id.removeprefix("sha256:")[:12]) if e.image_id else "<missing>",
                ago(parse_created(e.created)),
                e.created_by if no_trunc else _truncate(e.created_by, 45),
                human_size(e.size),
                e.comment,
            )
            for e in entries
        ],
    )
    return 0
