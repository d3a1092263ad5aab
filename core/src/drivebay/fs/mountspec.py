"""Carry out a :class:`~drivebay.hookspecs.graph.Mount` description, as containerd or runc would.

Used where drivebay itself must mount what a driver only describes: the bench's
"bare mount" reference, and tests that check a description really mounts.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from drivebay.errors import MountError
from drivebay.fs.mounts import MS_BIND, MS_RDONLY, MS_REC, MS_REMOUNT, mount
from drivebay.fs.newmount import MOUNT_ATTR_RDONLY, FsContext
from drivebay.hookspecs.graph import Mount

_ACCESS = ("ro", "rw")


def mount_described(spec: Mount, target: Path) -> None:
    """Mount ``spec`` at ``target``: a bind, a fuse program, or a kernel filesystem through the new mount API.

    The new API takes one ``fsconfig`` call per option (``lowerdir`` split into
    ``lowerdir+`` layers), so deep overlay stacks mount past mount(2)'s one-page limit.
    """
    read_only = "ro" in spec.options
    if spec.type == "bind":
        mount(spec.source, target, None, MS_BIND | (MS_REC if "rbind" in spec.options else 0))
        if read_only:
            mount("none", target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
        return
    options = [o for o in spec.options if o not in _ACCESS]
    if spec.type.startswith("fuse"):
        program = spec.type.split(".", 1)[-1]
        result = subprocess.run([program, "-o", ",".join(options), str(target)], capture_output=True, text=True)
        if result.returncode != 0:
            raise MountError(f"{program} could not mount {target}: {result.stderr.strip()}")
        return
    with FsContext(spec.type) as ctx:
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
