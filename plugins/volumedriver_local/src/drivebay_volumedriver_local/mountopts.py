"""Docker's ``-o o=...`` mount options: flag words become mount(2) flags, the rest filesystem data.

The same split as moby's ``mount.Mount``: ``ro,nosuid,size=64m`` gives
``MS_RDONLY|MS_NOSUID`` and the data ``size=64m``. ``loop`` is taken out for
the driver, which attaches the device itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivebay.fs import mounts

MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24

# word -> (clear?, flag), as moby/sys/mount's flags table.
FLAG_WORDS: dict[str, tuple[bool, int]] = {
    "defaults": (False, 0),
    "ro": (False, mounts.MS_RDONLY),
    "rw": (True, mounts.MS_RDONLY),
    "suid": (True, mounts.MS_NOSUID),
    "nosuid": (False, mounts.MS_NOSUID),
    "dev": (True, mounts.MS_NODEV),
    "nodev": (False, mounts.MS_NODEV),
    "exec": (True, MS_NOEXEC),
    "noexec": (False, MS_NOEXEC),
    "sync": (False, MS_SYNCHRONOUS),
    "async": (True, MS_SYNCHRONOUS),
    "dirsync": (False, MS_DIRSYNC),
    "mand": (False, MS_MANDLOCK),
    "nomand": (True, MS_MANDLOCK),
    "atime": (True, MS_NOATIME),
    "noatime": (False, MS_NOATIME),
    "diratime": (True, MS_NODIRATIME),
    "nodiratime": (False, MS_NODIRATIME),
    "bind": (False, mounts.MS_BIND),
    "rbind": (False, mounts.MS_BIND | mounts.MS_REC),
    "relatime": (False, MS_RELATIME),
    "norelatime": (True, MS_RELATIME),
    "strictatime": (False, MS_STRICTATIME),
    "nostrictatime": (True, MS_STRICTATIME),
}

# Flags a bind mount ignores on creation and needs a remount to apply.
REMOUNT_FLAGS = mounts.MS_RDONLY | mounts.MS_NOSUID | mounts.MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME


@dataclass(frozen=True)
class MountOptions:
    """``flags`` for mount(2), ``data`` for the filesystem, and whether ``loop`` was asked for."""

    flags: int
    data: str
    loop: bool

    @property
    def bind(self) -> bool:
        return bool(self.flags & mounts.MS_BIND)

    @property
    def read_only(self) -> bool:
        return bool(self.flags & mounts.MS_RDONLY)


def parse_mount_options(text: str) -> MountOptions:
    """Split a comma-separated option string as moby's ``parseOptions`` does."""
    flags = 0
    data = []
    loop = False
    for word in filter(None, (w.strip() for w in text.split(","))):
        if word == "loop":
            loop = True
        elif word in FLAG_WORDS:
            clear, flag = FLAG_WORDS[word]
            flags = flags & ~flag if clear else flags | flag
        else:
            data.append(word)
    return MountOptions(flags=flags, data=",".join(data), loop=loop)
