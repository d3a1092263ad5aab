"""Volume driver hooks: the contract of Docker's volume plugin API.

A volume is a named directory that outlives containers. A driver creates,
mounts and removes volumes; Docker's ``/VolumeDriver.*`` calls map one to one
onto these hooks (Create, Remove, Mount, Unmount, Path, Get, List,
Capabilities).

Core wraps every driver in :class:`drivebay.facades.volume.VolumeDriver`,
which checks names, keeps the users of each volume (a count per caller ID) in
``drivebay.db`` across processes, calls ``volume_mount`` only for the first
user and ``volume_unmount`` only after the last, and refuses to remove a
volume in use. Core calls these hooks; callers never call them directly.

Every hook in :data:`REQUIRED_HOOKS` is required.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from drivebay.hookspecs import hookspec

GROUP = "drivebay.volumedrivers"
PREFIX = "volume_"


@dataclass(frozen=True)
class VolumeCapabilities:
    """What a volume driver declares it supports.

    - ``scope``: ``local`` (volumes live on this host) or ``global`` (the same
      volume is reachable from every host), as Docker's Capabilities.Scope.
    - ``options``: the ``-o`` keys ``volume_create`` accepts.
    """

    scope: str = "local"
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class Volume:
    """A volume as the driver describes it (Docker's ``Volume`` plus its options).

    ``mountpoint`` is where the volume's data is seen when mounted, an
    absolute path. ``created_ns`` is UTC nanoseconds since the epoch.
    ``options`` are the ``-o`` options it was created with. ``status`` holds
    driver-specific facts (the mounted device, say) for ``volume inspect``.
    """

    name: str
    mountpoint: Path
    created_ns: int
    options: Mapping[str, str] = field(default_factory=dict)
    status: Mapping[str, str] = field(default_factory=dict)


@hookspec(firstresult=True)
def volume_capabilities() -> VolumeCapabilities:  # type: ignore[empty-body]
    """Declare what the driver supports.

    Called before ``volume_init`` and at any time after. Returns a
    :class:`VolumeCapabilities`. Raises nothing.
    """


@hookspec(firstresult=True)
def volume_probe(root: Path) -> str | None:
    """Tell whether this host can run the driver with drivebay's root at ``root``.

    Called by ``drivebay drivers``, ``drivebay info`` and before
    ``volume_init``; ``root`` may not exist yet and is left untouched.
    Returns ``None`` when supported, else the reason in a few words. Raises
    nothing.
    """


@hookspec(firstresult=True)
def volume_init(root: Path) -> None:
    """Prepare the driver to keep volumes under drivebay's root ``root``.

    Called once per process before any hook but ``volume_capabilities`` and
    ``volume_probe``. The driver keeps its data in a directory of its own
    below ``root`` (the local driver uses ``<root>/volumes``, as Docker does)
    and re-adopts volumes and mounts an earlier process left. Returns
    nothing. Raises ``DriverNotSupported`` when the host lacks something.
    """


@hookspec(firstresult=True)
def volume_create(name: str, options: Mapping[str, str]) -> None:
    """Create volume ``name`` with the ``-o`` ``options``.

    Called by core after it checked that ``name`` is valid and new. All or
    nothing: on any error nothing of the volume is left. Returns nothing.
    Raises ``InvalidConfig`` naming an unknown option, a missing required
    one or a bad value, and ``VolumeExists`` if the driver already holds it.
    """


@hookspec(firstresult=True)
def volume_remove(name: str) -> None:
    """Delete volume ``name`` and its data.

    Called by core when no caller uses the volume (after ``volume_unmount``
    of the last one). Must never delete data outside the volume, such as a
    directory the volume bind-mounted. Returns nothing. Raises
    ``VolumeNotFound``, or ``MountError`` if a leftover mount cannot be
    undone.
    """


@hookspec(firstresult=True)
def volume_mount(name: str, caller_id: str) -> Path:  # type: ignore[empty-body]
    """Make volume ``name`` available and return its mountpoint.

    Called by core, under the refcount lock, when the first caller
    (``caller_id``) starts using the volume. Must be idempotent: a mount
    left by an earlier process is adopted. Returns an absolute path. Raises
    ``VolumeNotFound``, or ``MountError`` when the device cannot be mounted
    (then nothing stays mounted or attached).
    """


@hookspec(firstresult=True)
def volume_unmount(name: str, caller_id: str) -> None:
    """Release volume ``name`` after its last caller (``caller_id``) stopped using it.

    Called by core under the refcount lock. Must succeed when nothing is
    mounted. Returns nothing. Raises ``VolumeNotFound``, or ``MountError``
    when an unmount fails (the volume is busy).
    """


@hookspec(firstresult=True)
def volume_path(name: str) -> Path:  # type: ignore[empty-body]
    """Return the mountpoint of volume ``name``, mounted or not (Docker's Path).

    Returns an absolute path. Raises ``VolumeNotFound``.
    """


@hookspec(firstresult=True)
def volume_get(name: str) -> Volume:  # type: ignore[empty-body]
    """Describe volume ``name``.

    Called by ``volume inspect`` and by core to check existence. Returns a
    :class:`Volume`. Raises ``VolumeNotFound``.
    """


@hookspec(firstresult=True)
def volume_list() -> list[Volume]:  # type: ignore[empty-body]
    """Describe every volume the driver holds, sorted by name.

    Called by ``volume ls``. Returns a list of :class:`Volume`. Raises
    nothing for a healthy store.
    """


REQUIRED_HOOKS = (
    "volume_capabilities",
    "volume_probe",
    "volume_init",
    "volume_create",
    "volume_remove",
    "volume_mount",
    "volume_unmount",
    "volume_path",
    "volume_get",
    "volume_list",
)
PROBE_HOOK = "volume_probe"
