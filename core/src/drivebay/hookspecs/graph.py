"""Graph (storage) driver hooks: the contract of moby's ProtoDriver and DiffDriver.

A graph driver stores layers. A layer is a directory tree identified by an
opaque ID; it may have a parent, and then it starts as an exact copy of the
parent's view. Read-only layers (``graph_create``) hold image layers;
read-write layers (``graph_create_rw``) hold containers.

Core wraps every driver in :class:`drivebay.graph.GraphDriver`, which keeps the
layer registry (parents, children, depth), the mount refcounts and crash
recovery, so a driver only does what is specific to its filesystem. Core calls
these hooks; callers never call them directly.

Required hooks are listed in :data:`REQUIRED_HOOKS`. The diff hooks are
optional: a driver that leaves them out, or returns ``None`` from one, gets
core's naive implementation, which compares the mounted trees.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from drivebay.hookspecs import hookspec

GROUP = "drivebay.graphdrivers"
PREFIX = "graph_"


class ChangeKind(enum.Enum):
    """The three letters of ``docker diff``."""

    ADD = "A"
    MODIFY = "C"
    DELETE = "D"


@dataclass(frozen=True, order=True)
class Change:
    """One changed path of a layer against its parent.

    ``path`` is absolute inside the layer (``/etc/motd``).
    """

    path: str
    kind: ChangeKind

    def __str__(self) -> str:
        return f"{self.kind.value} {self.path}"


@dataclass(frozen=True)
class Mount:
    """How to mount a layer without mounting it, as a containerd snapshotter says.

    ``type`` is a filesystem type (``overlay``, ``bind``), ``source`` the
    device or directory, ``options`` the mount options in order.
    """

    type: str
    source: str
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class GraphCapabilities:
    """What a driver declares it supports. The conformance suite reads these.

    - ``native_diff``: diff and changes follow the change, not the image size.
    - ``quota``: the ``size`` storage-opt can be honoured on some backing fs;
      ``quota_filesystems`` names them (``xfs``, ``btrfs``).
    - ``max_depth``: the deepest chain of layers the driver can mount.
    - ``required_filesystem``: the home must be on this filesystem (``btrfs``),
      or ``None`` for any.
    - ``remove_while_mounted``: removing a mounted layer is allowed (it is
      unmounted first) instead of failing with ``LayerInUse``.
    - ``xattrs``, ``device_nodes``, ``hardlinks``: file features the driver
      preserves.
    - ``long_names``: file names of the full 255 bytes work; ``False`` when the
      driver's whiteouts need room in the name (aufs's ``.wh.`` form allows 251).
    """

    native_diff: bool
    quota: bool
    max_depth: int
    quota_filesystems: tuple[str, ...] = ()
    required_filesystem: str | None = None
    remove_while_mounted: bool = False
    xattrs: bool = True
    device_nodes: bool = True
    hardlinks: bool = True
    long_names: bool = True
    extra: Mapping[str, str] = field(default_factory=dict)


@hookspec(firstresult=True)
def graph_capabilities() -> GraphCapabilities:  # type: ignore[empty-body]
    """Declare what the driver supports.

    Called before ``graph_init`` and at any time after; the answer must not
    depend on the home. Returns a :class:`GraphCapabilities`. Raises nothing.
    """


@hookspec(firstresult=True)
def graph_probe(home: Path) -> str | None:
    """Tell whether this host can run the driver with its data at ``home``.

    Called by ``drivebay drivers``, ``drivebay info`` and auto-selection, before
    ``graph_init``. ``home`` may not exist yet; the probe may create and remove
    scratch files under it (a test mount, for example) but leaves nothing.
    Returns ``None`` when supported, else the reason in a few words that say
    what is missing (``backing fs is ext4, not btrfs``). Raises nothing.
    """


@hookspec(firstresult=True)
def graph_init(home: Path, options: Mapping[str, str]) -> None:
    """Prepare the driver to store layers under ``home``.

    Called once per process before any other hook but ``graph_capabilities``
    and ``graph_probe``. ``home`` is ``<root>/<driver name>`` and is created
    by core. ``options`` are the ``storage-opts`` that apply to the driver as
    a whole (``key=value``, keys as in Docker). Re-adopts state left by an
    earlier process and finishes any half-done work it finds (a crash).
    Raises ``DriverNotSupported`` when the host lacks something, or
    ``InvalidConfig`` naming an unknown or bad option.
    """


@hookspec(firstresult=True)
def graph_create(layer_id: str, parent: str | None, storage_opts: Mapping[str, str]) -> None:
    """Create a read-only (image) layer ``layer_id`` on top of ``parent``.

    Called by core after it checked that ``layer_id`` is new and ``parent``
    exists. The new layer shows exactly the parent's view (or is empty with no
    parent) and is filled by ``apply_diff``. ``storage_opts`` are per-layer
    options (``size``). Raises ``QuotaNotSupported`` for ``size`` where the
    backing fs cannot enforce it, ``InvalidConfig`` for an unknown option.
    """


@hookspec(firstresult=True)
def graph_create_rw(layer_id: str, parent: str | None, storage_opts: Mapping[str, str]) -> None:
    """Create a read-write (container) layer ``layer_id`` on top of ``parent``.

    As ``graph_create``, but the layer is meant to be mounted and written.
    """


@hookspec(firstresult=True)
def graph_remove(layer_id: str) -> None:
    """Delete layer ``layer_id`` and everything the driver stored for it.

    Called by core once the layer is unmounted (refcount zero) and has no
    children. Also removes nested subvolumes or mounts found inside it.
    Raises ``LayerNotFound`` if the driver has no such layer.
    """


@hookspec(firstresult=True)
def graph_get(layer_id: str) -> Path:  # type: ignore[empty-body]
    """Make layer ``layer_id``'s merged view available and return its path.

    Called by core on every ``get`` under the refcount lock; must be
    idempotent: when the view is already mounted (by this or an earlier
    process) it is adopted and its path returned. Returns an absolute path.
    Raises ``LayerNotFound``, ``DepthLimitExceeded`` or ``MountError``.
    """


@hookspec(firstresult=True)
def graph_put(layer_id: str) -> None:
    """Release the merged view of ``layer_id`` (unmount it).

    Called by core when the last reference is released. Must succeed when the
    view is not mounted. Raises ``MountError`` if an unmount fails.
    """


@hookspec(firstresult=True)
def graph_exists(layer_id: str) -> bool:  # type: ignore[empty-body]
    """Return whether the driver holds layer ``layer_id``. Raises nothing."""


@hookspec(firstresult=True)
def graph_status() -> list[tuple[str, str]]:  # type: ignore[empty-body]
    """Return ``(key, value)`` pairs that describe the driver's state.

    Shown by ``drivebay info``, like ``docker info``'s storage section: backing
    fs, d_type, diff method, depth limit, quota state and the like.
    """


@hookspec(firstresult=True)
def graph_metadata(layer_id: str) -> dict[str, str]:  # type: ignore[empty-body]
    """Return driver-specific facts about ``layer_id`` (paths, subvolume ID...).

    Raises ``LayerNotFound``.
    """


@hookspec(firstresult=True)
def graph_cleanup() -> None:
    """Unmount everything this driver mounted; called at shutdown and by
    ``graph cleanup``. Leaves layers in place. Raises ``MountError``."""


@hookspec(firstresult=True)
def graph_diff(layer_id: str, parent: str | None, out: BinaryIO) -> bool | None:
    """Write the layer tar of ``layer_id`` against ``parent`` to ``out``.

    Optional. ``parent`` is the layer's own parent (core passes it); the tar
    uses the OCI layer format written by :mod:`drivebay.archive`. Returns
    ``True`` when written, or ``None`` to let core produce the naive diff
    (for example when the native method is not valid on this mount).
    Raises ``LayerNotFound``.
    """


@hookspec(firstresult=True)
def graph_changes(layer_id: str, parent: str | None) -> list[Change] | None:
    """Return the changes of ``layer_id`` against ``parent``, sorted by path.

    Optional, as ``graph_diff``: ``None`` means use the naive comparison.
    Results must equal the naive comparison's. Raises ``LayerNotFound``.
    """


@hookspec(firstresult=True)
def graph_apply_diff(layer_id: str, parent: str | None, tar: BinaryIO) -> int | None:
    """Apply the layer tar read from ``tar`` to the new layer ``layer_id``.

    Optional. ``tar`` is uncompressed (core decompresses). The driver writes
    into its own storage, turning tar whiteouts into its on-disk form with
    :func:`drivebay.archive.apply_layer_tar`. Returns the size in bytes of the
    applied content (equal to ``graph_diff_size`` afterwards), or ``None`` to
    let core apply through the mounted view. Raises ``UnsafeArchive``.
    """


@hookspec(firstresult=True)
def graph_diff_size(layer_id: str, parent: str | None) -> int | None:
    """Return the size in bytes of the changes of ``layer_id`` against ``parent``.

    Optional, as ``graph_diff``. Raises ``LayerNotFound``.
    """


@hookspec(firstresult=True)
def graph_mounts(layer_id: str) -> list[Mount] | None:
    """Describe how to mount ``layer_id`` without mounting it.

    Optional. For callers that mount for themselves (containerd, runc).
    ``None`` means the default: a bind mount of ``graph_get``'s path.
    Raises ``LayerNotFound``.
    """


REQUIRED_HOOKS = (
    "graph_capabilities",
    "graph_probe",
    "graph_init",
    "graph_create",
    "graph_create_rw",
    "graph_remove",
    "graph_get",
    "graph_put",
    "graph_exists",
    "graph_status",
    "graph_metadata",
    "graph_cleanup",
)
PROBE_HOOK = "graph_probe"
