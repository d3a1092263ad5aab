"""The local volume driver: Docker's ``local`` driver, layout for layout.

A volume is ``<root>/volumes/<name>/_data``. Without options it is a plain
directory. With options (``type``, ``device``, ``o``) they are stored beside
it in ``opts.json`` with Docker's keys, and ``_data`` becomes a real mount
made at the first use and undone after the last one: a tmpfs, a block device
or image file (``o=loop``), or a bind of an existing directory
(``type=none``, ``o=bind``).

A volume appears all at once: it is built under a temporary name and renamed
into place, so a failure leaves nothing behind.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
from collections.abc import Mapping
from pathlib import Path

import drivebay
from drivebay.errors import InvalidConfig, MountError, QuotaNotSupported, VolumeExists, VolumeNotFound
from drivebay.fs import mounts
from drivebay.fs.backing import kernel_filesystems
from drivebay.hookspecs.volume import Volume, VolumeCapabilities
from drivebay.processes import pid_alive
from drivebay_volumedriver_local import loopdev
from drivebay_volumedriver_local.mountopts import REMOUNT_FLAGS, MountOptions, parse_mount_options

OPTIONS = ("type", "device", "o")
REQUIRED_WITH = {"device": ("type",), "type": ("device",), "o": ("device", "type")}
OPTS_FILE = "opts.json"
DATA_DIR = "_data"
CREATING_PREFIX = ".creating-"


def validate_options(options: Mapping[str, str]) -> MountOptions | None:
    """Check ``-o`` options as Docker's local driver does, and a little more; returns the parsed ``o``."""
    for key in options:
        if key == "size":
            raise QuotaNotSupported(
                "volume option 'size' needs project quotas, which this kernel lacks (no CONFIG_QUOTA); "
                "use '-o type=tmpfs -o device=tmpfs -o o=size=64m' for a size-limited volume"
            )
        if key not in OPTIONS:
            raise InvalidConfig(
                f"invalid volume option {key!r} for the local driver; valid options: {', '.join(OPTIONS)}"
            )
    for key, required in REQUIRED_WITH.items():
        for needed in required:
            if key in options and needed not in options:
                raise InvalidConfig(f"volume option {key!r} needs option {needed!r} too (missing required option)")
    if not options:
        return None
    parsed = parse_mount_options(options.get("o", ""))
    fstype, device = options["type"], options["device"]
    if parsed.bind:
        if not os.path.exists(device):
            raise InvalidConfig(f"bind volume device {device!r} does not exist; create it or fix the path")
    elif fstype == "none":
        raise InvalidConfig("volume type 'none' needs -o o=bind (or rbind) and an existing directory as device")
    else:
        if fstype not in kernel_filesystems():
            raise InvalidConfig(f"volume type {fstype!r} is not a filesystem this kernel knows (see /proc/filesystems)")
        if parsed.loop and not os.path.isfile(device):
            raise InvalidConfig(f"loop volume device {device!r} is not an image file; create it first")
        if device.startswith("/dev/") and not parsed.loop and not os.path.exists(device):
            raise InvalidConfig(f"volume device {device!r} does not exist")
    return parsed


class LocalVolumeDriver:
    """Hook implementations of the local driver."""

    def __init__(self) -> None:
        self.home = Path("/nonexistent")

    def _dir(self, name: str) -> Path:
        return self.home / name

    def _existing(self, name: str) -> Path:
        directory = self._dir(name)
        if not (directory / DATA_DIR).is_dir():
            raise VolumeNotFound(f"no volume named '{name}'; create it with 'drivebay volume create {name}'")
        return directory

    def _options(self, directory: Path) -> dict[str, str]:
        """The ``-o`` options, from Docker's opts.json keys."""
        try:
            stored = json.loads((directory / OPTS_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        options = {"type": stored.get("MountType", ""), "device": stored.get("MountDevice", "")}
        if stored.get("MountOpts"):
            options["o"] = stored["MountOpts"]
        return {k: v for k, v in options.items() if v}

    @drivebay.hookimpl
    def volume_capabilities(self) -> VolumeCapabilities:
        return VolumeCapabilities(scope="local", options=OPTIONS)

    @drivebay.hookimpl
    def volume_probe(self, root: Path) -> str | None:
        return None

    @drivebay.hookimpl
    def volume_init(self, root: Path) -> None:
        self.home = root / "volumes"
        self.home.mkdir(parents=True, exist_ok=True)
        for entry in self.home.iterdir():
            if entry.name.startswith(CREATING_PREFIX):
                pid = entry.name.rsplit("-", 1)[-1]
                if pid.isdigit() and not pid_alive(int(pid)):
                    shutil.rmtree(entry)

    @drivebay.hookimpl
    def volume_create(self, name: str, options: Mapping[str, str]) -> None:
        validate_options(options)
        target = self._dir(name)
        if target.exists():
            raise VolumeExists(f"volume '{name}' already exists; remove it first or choose another name")
        staging = self.home / f"{CREATING_PREFIX}{name}-{os.getpid()}"
        try:
            (staging / DATA_DIR).mkdir(parents=True, mode=0o755)
            if options:
                stored = {
                    "MountType": options["type"],
                    "MountOpts": options.get("o", ""),
                    "MountDevice": options["device"],
                    "Quota": {"Size": 0},
                }
                temporary = staging / (OPTS_FILE + ".tmp")
                temporary.write_text(json.dumps(stored), encoding="utf-8")
                os.rename(temporary, staging / OPTS_FILE)
            os.rename(staging, target)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise VolumeExists(f"volume '{name}' already exists; remove it first or choose another name") from exc
            raise

    @drivebay.hookimpl
    def volume_remove(self, name: str) -> None:
        directory = self._existing(name)
        data = directory / DATA_DIR
        if mounts.is_mountpoint(data):
            mounts.unmount(data)
        left = mounts.mounts_under(directory)
        if left:
            raise MountError(
                f"volume '{name}' still has mounts under it ({', '.join(str(m.mount_point) for m in left)}); "
                "unmount them first"
            )
        shutil.rmtree(directory)

    @drivebay.hookimpl
    def volume_mount(self, name: str, caller_id: str) -> Path:
        directory = self._existing(name)
        data = directory / DATA_DIR
        options = self._options(directory)
        if not options or mounts.is_mountpoint(data):
            return data
        parsed = validate_options(options)
        assert parsed is not None
        self._mount(name, data, options, parsed)
        return data

    def _mount(self, name: str, data: Path, options: Mapping[str, str], parsed: MountOptions) -> None:
        fstype, device = options["type"], options["device"]
        if parsed.bind:
            mounts.mount(device, data, None, parsed.flags & ~REMOUNT_FLAGS)
            if parsed.flags & REMOUNT_FLAGS:
                try:
                    mounts.mount("", data, None, mounts.MS_BIND | mounts.MS_REMOUNT | parsed.flags)
                except MountError:
                    mounts.unmount(data)
                    raise
            return
        loop = loopdev.attach(Path(device), parsed.read_only) if parsed.loop else None
        try:
            source = str(loop.path) if loop else device
            mounts.mount(source, data, fstype, parsed.flags, parsed.data)
        except MountError as exc:
            raise MountError(f"volume '{name}' cannot be mounted: {exc}; check its -o type, device and o") from exc
        finally:
            if loop is not None:
                loop.close()  # the mount holds the device now; without one, autoclear detaches it

    @drivebay.hookimpl
    def volume_unmount(self, name: str, caller_id: str) -> None:
        data = self._existing(name) / DATA_DIR
        if mounts.is_mountpoint(data):
            mounts.unmount(data)

    @drivebay.hookimpl
    def volume_path(self, name: str) -> Path:
        return self._existing(name) / DATA_DIR

    @drivebay.hookimpl
    def volume_get(self, name: str) -> Volume:
        directory = self._existing(name)
        data = directory / DATA_DIR
        options = self._options(directory)
        status = {"mounted": "true" if options and mounts.is_mountpoint(data) else "false"}
        return Volume(
            name=name,
            mountpoint=data,
            created_ns=os.stat(directory).st_ctime_ns,
            options=options,
            status=status,
        )

    @drivebay.hookimpl
    def volume_list(self) -> list[Volume]:
        if not self.home.is_dir():
            return []
        names = sorted(
            entry.name
            for entry in self.home.iterdir()
            if not entry.name.startswith(".") and stat.S_ISDIR(entry.lstat().st_mode) and (entry / DATA_DIR).is_dir()
        )
        return [self.volume_get(name) for name in names]
