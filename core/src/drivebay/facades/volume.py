"""The typed facade over a volume driver: what ``drivebay volume`` and containers use instead of ``pm.hook``.

Core keeps, once for every driver:
- Docker's name rule for volumes;
- the users of each volume, a count per caller ID, in ``drivebay.db``, shared
  by every drivebay process: the driver mounts on the first use and unmounts
  after the last, as Docker's plugin API expects;
- refusing to remove a volume in use, naming its users.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from drivebay.errors import (
    DriverNotSupported,
    UsageError,
    VolumeExists,
    VolumeInUse,
    VolumeNotFound,
    VolumeNotMounted,
)
from drivebay.hookspecs.volume import Volume, VolumeCapabilities
from drivebay.loader import KINDS, LoadedDriver, load_driver
from drivebay.names import check_restricted_name
from drivebay.state import StateDB

if TYPE_CHECKING:
    from drivebay.config import Config

SCHEMA = """
CREATE TABLE IF NOT EXISTS volume_users (
    driver TEXT NOT NULL,
    name TEXT NOT NULL,
    caller_id TEXT NOT NULL,
    count INTEGER NOT NULL CHECK (count > 0),
    PRIMARY KEY (driver, name, caller_id)
)
"""

def check_volume_name(name: str) -> None:
    """Raise ``UsageError`` unless ``name`` is a valid volume name."""
    check_restricted_name(name, "volume")


@dataclass(frozen=True)
class VolumeView:
    """A volume with what core knows about it: the driver's description plus its users."""

    volume: Volume
    driver: str
    scope: str
    users: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        """Docker's ``volume inspect`` keys, plus ``Users`` (caller ID to mount count)."""
        return {
            "Name": self.volume.name,
            "Driver": self.driver,
            "Mountpoint": str(self.volume.mountpoint),
            "Options": dict(self.volume.options),
            "CreatedAt": _rfc3339(self.volume.created_ns),
            "Scope": self.scope,
            "Status": dict(self.volume.status),
            "Users": dict(self.users),
        }


def _rfc3339(timestamp_ns: int) -> str:
    seconds = timestamp_ns // 1_000_000_000
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class VolumeDriver:
    """A loaded, initialised volume driver with core's names, users and removal checks."""

    def __init__(self, loaded: LoadedDriver, root: Path, state: StateDB) -> None:
        self.loaded = loaded
        self.name = loaded.name
        self.root = root
        self.state = state
        self._hook = loaded.hook
        self.capabilities: VolumeCapabilities = self._hook.volume_capabilities()
        reason = self._hook.volume_probe(root=root)
        if reason is not None:
            raise DriverNotSupported(self.name, reason, "choose another volume-driver")
        state.ensure_schema(SCHEMA)
        self._hook.volume_init(root=root)

    # -- users ---------------------------------------------------------------

    def users(self, name: str) -> dict[str, int]:
        """Caller ID to mount count, for every caller using volume ``name``."""
        rows = self.state.query(
            "SELECT caller_id, count FROM volume_users WHERE driver=? AND name=? ORDER BY caller_id",
            (self.name, name),
        )
        return {str(r["caller_id"]): int(r["count"]) for r in rows}

    def _describe_users(self, users: Mapping[str, int]) -> str:
        return ", ".join(f"{caller} ({count}x)" if count > 1 else caller for caller, count in users.items())

    # -- lifecycle --------------------------------------------------------------

    def create(self, name: str, options: Mapping[str, str] | None = None) -> VolumeView:
        """Create volume ``name``; all or nothing. Raises ``VolumeExists`` if it exists."""
        check_volume_name(name)
        with self.state.transaction():
            if self.exists(name):
                raise VolumeExists(f"volume '{name}' already exists; remove it first or choose another name")
            self._hook.volume_create(name=name, options=dict(options or {}))
        return self.inspect(name)

    def exists(self, name: str) -> bool:
        try:
            self._hook.volume_get(name=name)
        except VolumeNotFound:
            return False
        return True

    def inspect(self, name: str) -> VolumeView:
        """Describe volume ``name``. Raises ``VolumeNotFound``."""
        check_volume_name(name)
        volume: Volume = self._hook.volume_get(name=name)
        return VolumeView(volume, self.name, self.capabilities.scope, self.users(name))

    def list(self) -> list[VolumeView]:
        volumes: list[Volume] = self._hook.volume_list()
        return [VolumeView(v, self.name, self.capabilities.scope, self.users(v.name)) for v in volumes]

    def path(self, name: str) -> Path:
        check_volume_name(name)
        return Path(self._hook.volume_path(name=name))

    def mount(self, name: str, caller_id: str) -> Path:
        """Record ``caller_id`` as a user of ``name``; the first user mounts it. Returns the mountpoint."""
        check_volume_name(name)
        if not caller_id:
            raise UsageError("a caller ID is needed to mount a volume (--id)")
        with self.state.transaction() as db:
            if not self.users(name):
                path = Path(self._hook.volume_mount(name=name, caller_id=caller_id))
            else:
                path = Path(self._hook.volume_path(name=name))
            db.execute(
                "INSERT INTO volume_users VALUES (?, ?, ?, 1) "
                "ON CONFLICT (driver, name, caller_id) DO UPDATE SET count = count + 1",
                (self.name, name, caller_id),
            )
        return path

    def unmount(self, name: str, caller_id: str) -> None:
        """Drop one use of ``name`` by ``caller_id``; after the last use of all callers it is unmounted."""
        check_volume_name(name)
        with self.state.transaction() as db:
            users = self.users(name)
            if caller_id not in users:
                self._hook.volume_get(name=name)  # VolumeNotFound first, if that is the problem
                held = f"it is used by {self._describe_users(users)}" if users else "nobody uses it"
                raise VolumeNotMounted(f"volume '{name}' is not mounted by '{caller_id}' ({held})")
            if users[caller_id] > 1:
                db.execute(
                    "UPDATE volume_users SET count = count - 1 WHERE driver=? AND name=? AND caller_id=?",
                    (self.name, name, caller_id),
                )
                return
            if len(users) == 1:
                self._hook.volume_unmount(name=name, caller_id=caller_id)
            db.execute(
                "DELETE FROM volume_users WHERE driver=? AND name=? AND caller_id=?", (self.name, name, caller_id)
            )

    def remove(self, name: str, force: bool = False) -> None:
        """Remove volume ``name``; refused while in use unless ``force``, which unmounts it first."""
        check_volume_name(name)
        with self.state.transaction() as db:
            self._hook.volume_get(name=name)
            users = self.users(name)
            if users and not force:
                raise VolumeInUse(
                    f"volume '{name}' is in use by {self._describe_users(users)}; unmount it "
                    f"('drivebay volume unmount {name} --id ID') or remove it with -f"
                )
            if users:
                self._hook.volume_unmount(name=name, caller_id=next(iter(users)))
                db.execute("DELETE FROM volume_users WHERE driver=? AND name=?", (self.name, name))
            self._hook.volume_remove(name=name)


def open_volume_driver(config: Config, state: StateDB) -> VolumeDriver:
    """Load and initialise the configured volume driver (config key ``volume-driver``)."""
    loaded = load_driver(KINDS["volume"], config.volume_driver, echo_timings=config.debug)
    return VolumeDriver(loaded, Path(config.root), state)
