"""Carry out a :class:`~drivebay.hookspecs.graph.Mount` description, as containerd or runc would.

Used where drivebay itself must mount what a driver only describes: the bench's
"bare mount" reference, and tests that check a description really mounts.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from drivebay.errors import MountError
from drivebay.fs.mounts import MS_BIND, MS_RDONLY, MS_REC, MS_REMOUNT, mount, mount_relative
from drivebay.fs.newmount import MOUNT_ATTR_RDONLY, FsContext
from drivebay.hookspecs.graph import Mount

_ACCESS = ("ro", "rw")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def prepare_mount(spec: Mount) -> Callable[[Path], None]:
    """Work out once how to mount ``spec``; the function returned mounts it at a target with no more parsing.

    A benchmark times only that function, so its bare reference is the system
    calls alone. A kernel filesystem is mounted as containerd does: with mount(2)
    while its options fit one page; else, for overlay, with the lower directories
    made relative to their common parent when that fits (in this thread's working
    directory only); else through the new mount API, one ``fsconfig`` call per
    option (``lowerdir`` split into ``lowerdir+`` layers), which has no page limit.
    """
    read_only = "ro" in spec.options
    if spec.type == "bind":
        bind_flags = MS_BIND | (MS_REC if "rbind" in spec.options else 0)

        def bind(target: Path) -> None:
            mount(spec.source, target, None, bind_flags)
            if read_only:
                mount("none", target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)

        return bind
    options = [o for o in spec.options if o not in _ACCESS]
    if spec.type.startswith("fuse"):
        program = spec.type.split(".", 1)[-1]

        def run_program(target: Path) -> None:
            result = subprocess.run([program, "-o", ",".join(options), str(target)], capture_output=True, text=True)
            if result.returncode != 0:
                raise MountError(f"{program} could not mount {target}: {result.stderr.strip()}")

        return run_program
    flags = MS_RDONLY if read_only else 0
    data = ",".join(options)
    if len(data) < PAGE_SIZE:  # the page holds the terminating NUL too
        return lambda target: mount(spec.source, target, spec.type, flags, data)
    compact = _relative_lowers(options)
    if compact is not None and len(compact[1]) < PAGE_SIZE:
        directory, relative_data = compact
        return lambda target: mount_relative(directory, spec.source, target.absolute(), spec.type, flags, relative_data)
    return lambda target: _mount_new_api(spec.type, options, target, read_only)


def _relative_lowers(options: list[str]) -> tuple[Path, str] | None:
    """containerd's compactLowerdirOption: the lowers' common parent, and the options with lowers relative to it."""
    lowerdir = next((o for o in options if o.startswith("lowerdir=")), None)
    if lowerdir is None:
        return None
    value = lowerdir.removeprefix("lowerdir=")
    # The nearest directory above the first lower that is above them all. Cutting it off a path as text gives
    # a relative path that resolves in it to the same place. String counts, not os.path.commonpath, which
    # costs a fifth of the mount itself on a 128-deep stack.
    common = os.path.dirname(value.split(":", 1)[0])
    while common not in ("/", ""):
        prefix = f"{common}/"
        if value.startswith(prefix) and value.count(f":{prefix}") == value.count(":"):
            relative = "lowerdir=" + value[len(prefix) :].replace(f":{prefix}", ":")
            return Path(common), ",".join(relative if o is lowerdir else o for o in options)
        common = os.path.dirname(common)
    return None


def _mount_new_api(fstype: str, options: list[str], target: Path, read_only: bool) -> None:
    with FsContext(fstype) as ctx:
        for option in options:
            key, _, value = option.partition("=")
            if key == "lowerdir":
                for lower in value.split(":"):
                    ctx.set_string("lowerdir+", lower)
            elif value:
                ctx.set_string(key, value)
            else:
                ctx.set_flag(key)
        ctx.mount(target, MOUNT_ATTR_RDONLY if read_only else 0)
