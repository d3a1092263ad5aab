"""``drivebay graph``: the storage driver's layers, one command per facade call.

Mounts taken by ``graph mount`` outlive the process: the refcount lives in
``drivebay.db``, so ``graph unmount`` in a later process releases it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from drivebay.cli.context import CliContext
from drivebay.cli.output import print_json, print_table
from drivebay.config import parse_storage_opts
from drivebay.errors import UsageError
from drivebay.facades.graph import OWN_PARENT


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "graph",
        help="layers of the storage driver: create, mount, diff, apply, remove",
        description="Work on the storage (graph) driver's layers directly, as moby's graphdriver API does.",
    )
    graph = parser.add_subparsers(dest="graph_command", metavar="SUBCOMMAND", required=True)

    def layer_command(name: str, help_text: str, description: str) -> argparse.ArgumentParser:
        command = graph.add_parser(name, help=help_text, description=description)
        command.add_argument("layer_id", metavar="ID", help="layer ID")
        return command

    def parent_option(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--parent", metavar="P", default=OWN_PARENT, help="compare against layer P (default: the layer's parent)"
        )

    create = layer_command("create", "create a layer", "Create an empty layer, or one showing its parent's files.")
    create.add_argument("--parent", metavar="P", help="parent layer")
    create.add_argument("--rw", action="store_true", help="a read-write (container) layer")
    create.add_argument(
        "--storage-opt",
        dest="layer_storage_opt",
        metavar="K=V",
        action="append",
        default=[],
        help="per-layer option such as size=1G (repeatable)",
    )
    create.set_defaults(func=cmd_create)

    layer_command(
        "mount", "mount a layer; prints its path", "Take one mount reference and print the merged view's absolute path."
    ).set_defaults(func=cmd_mount)
    layer_command(
        "unmount", "release a mount", "Drop one mount reference; the last one unmounts the layer."
    ).set_defaults(func=cmd_unmount)

    diff = layer_command(
        "diff", "write a layer tar", "Write the layer tar (OCI layer format, whiteouts for deletions) of ID."
    )
    parent_option(diff)
    diff.add_argument("-o", "--output", type=Path, metavar="FILE", help="write to FILE instead of stdout")
    diff.set_defaults(func=cmd_diff)

    apply = layer_command(
        "apply",
        "create a layer from a layer tar; prints its size",
        "Create read-only layer ID on P and apply a layer tar (plain, gzip or zstd). All or nothing.",
    )
    apply.add_argument("--parent", metavar="P", help="parent layer")
    apply.add_argument("-i", "--input", type=Path, metavar="FILE", help="read FILE instead of stdin")
    apply.set_defaults(func=cmd_apply)

    changes = layer_command(
        "changes", "list changed paths", "Print 'A /path', 'C /path' or 'D /path' per change, like docker diff."
    )
    parent_option(changes)
    changes.set_defaults(func=cmd_changes)

    diff_size = layer_command(
        "diff-size", "print the size of the changes", "Print the bytes of added or changed files."
    )
    parent_option(diff_size)
    diff_size.set_defaults(func=cmd_diff_size)

    layer_command(
        "exists", "tell whether a layer exists", "Print true (exit 0) or false (exit 1)."
    ).set_defaults(func=cmd_exists)
    layer_command(
        "rm", "remove a layer", "Remove a layer; refused while it is mounted or has children."
    ).set_defaults(func=cmd_rm)

    ls = graph.add_parser("ls", help="list layers", description="List layers with parent, kind and mount count.")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=cmd_ls)

    graph.add_parser(
        "cleanup", help="unmount every layer", description="Unmount every layer and forget all mount references."
    ).set_defaults(func=cmd_cleanup)


def cmd_create(ctx: CliContext) -> int:
    a = ctx.args
    opts = parse_storage_opts(a.layer_storage_opt)
    if a.rw:
        ctx.graph().create_rw(a.layer_id, a.parent, opts)
    else:
        ctx.graph().create(a.layer_id, a.parent, opts)
    print(a.layer_id)
    return 0


def cmd_mount(ctx: CliContext) -> int:
    print(os.path.abspath(ctx.graph().get(ctx.args.layer_id)))
    return 0


def cmd_unmount(ctx: CliContext) -> int:
    ctx.graph().put(ctx.args.layer_id)
    return 0


@contextlib.contextmanager
def _output(path: Path | None) -> Iterator[BinaryIO]:
    """stdout, or ``path`` written whole or not at all (a temporary file renamed at the end)."""
    if path is None:
        if sys.stdout.isatty():
            raise UsageError("refusing to write a layer tar to a terminal; use -o FILE or redirect stdout")
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    path = path.absolute()
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise


def cmd_diff(ctx: CliContext) -> int:
    with _output(ctx.args.output) as out:
        ctx.graph().diff(ctx.args.layer_id, out, parent=ctx.args.parent)
    return 0


def cmd_apply(ctx: CliContext) -> int:
    a = ctx.args
    if a.input is None and sys.stdin.isatty():
        raise UsageError("refusing to read a layer tar from a terminal; use -i FILE or redirect stdin")
    with contextlib.ExitStack() as stack:
        stream: BinaryIO = sys.stdin.buffer if a.input is None else stack.enter_context(open(a.input, "rb"))
        size = ctx.graph().create_from_tar(a.layer_id, a.parent, stream)
    print(size)
    return 0


def cmd_changes(ctx: CliContext) -> int:
    for change in ctx.graph().changes(ctx.args.layer_id, parent=ctx.args.parent):
        print(change)
    return 0


def cmd_diff_size(ctx: CliContext) -> int:
    print(ctx.graph().diff_size(ctx.args.layer_id, parent=ctx.args.parent))
    return 0


def cmd_exists(ctx: CliContext) -> int:
    exists = ctx.graph().exists(ctx.args.layer_id)
    print("true" if exists else "false")
    return 0 if exists else 1


def cmd_rm(ctx: CliContext) -> int:
    ctx.graph().remove(ctx.args.layer_id)
    print(ctx.args.layer_id)
    return 0


def cmd_ls(ctx: CliContext) -> int:
    records = ctx.graph().records()
    if ctx.args.json:
        print_json(
            [{"id": r.id, "parent": r.parent, "rw": r.rw, "created": r.created, "mounts": r.mounts} for r in records]
        )
        return 0
    print_table(
        ("ID", "PARENT", "KIND", "MOUNTS"),
        [(r.id, r.parent or "-", "rw" if r.rw else "ro", str(r.mounts)) for r in records],
    )
    return 0


def cmd_cleanup(ctx: CliContext) -> int:
    ctx.graph().cleanup()
    return 0
