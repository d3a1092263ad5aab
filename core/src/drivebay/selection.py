"""Which graph driver a root uses: the configured one, or moby's priority order.

Auto-selection takes the first of overlay2 > btrfs > aufs > vfs that is
installed and whose probe accepts ``<root>/<name>``. A root is never switched
to another driver silently: when ``<root>/<name>/`` of some driver already
holds data, auto-selection keeps that driver and an explicit other driver is
refused with ``DriverRootMismatch``.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from drivebay.config import Config
from drivebay.errors import DrivebayError, DriverNotSupported, DriverRootMismatch
from drivebay.facades.graph import GraphDriver
from drivebay.loader import (
    KINDS,
    DriverKind,
    InstalledDriver,
    LoadedDriver,
    installed_driver_names,
    installed_drivers,
    load_driver,
)
from drivebay.state import StateDB

AUTO_ORDER = ("overlay2", "btrfs", "aufs", "vfs")
"""moby's graph driver priority, for drivers this project ships."""

KNOWN_GRAPH_DRIVERS = (*AUTO_ORDER, "devicemapper", "zfs", "fuse-overlayfs")
"""Names whose ``<root>/<name>/`` counts as earlier data even when the driver is not installed now."""


def probe_target(kind: DriverKind, root: Path, name: str) -> tuple[str, Path]:
    """The probe hook's keyword and value: graph and network drivers get their home, the others the root."""
    parameter = next(iter(inspect.signature(getattr(kind.spec, kind.probe_hook)).parameters))
    return parameter, (root / name if parameter == "home" else root)


def probe(loaded: LoadedDriver, root: Path) -> str | None:
    """Run ``loaded``'s probe against ``root``; ``None`` when supported, else the reason."""
    parameter, target = probe_target(loaded.kind, root, loaded.name)
    reason: str | None = getattr(loaded.hook, loaded.kind.probe_hook)(**{parameter: target})
    return reason


def probe_all(kind: DriverKind, root: Path) -> list[tuple[InstalledDriver, str | None]]:
    """Every installed driver of ``kind`` with ``None`` (supported here) or the reason it is not.

    A driver that cannot be loaded (a broken install, a contract error) is
    listed with that error as its reason, so one bad plugin does not hide the
    others.
    """
    results: list[tuple[InstalledDriver, str | None]] = []
    for installed in installed_drivers(kind):
        try:
            reason = probe(load_driver(kind, installed.name), root)
        except DrivebayError as exc:
            reason = f"cannot be loaded: {exc}"
        results.append((installed, reason))
    return results


def _holds_data(home: Path) -> bool:
    return home.is_dir() and any(home.iterdir())


def existing_graph_drivers(root: Path) -> list[str]:
    """Graph drivers whose home under ``root`` holds data, in priority order."""
    names = [*KNOWN_GRAPH_DRIVERS, *installed_driver_names(KINDS["graph"])]
    return [name for name in dict.fromkeys(names) if _holds_data(root / name)]


def choose_graph_driver(config: Config) -> str:
    """The graph driver name for ``config``: explicit, earlier data, or the first supported in :data:`AUTO_ORDER`."""
    root = config.root
    existing = existing_graph_drivers(root)
    explicit = config.storage_driver
    if explicit is not None:
        if existing and explicit not in existing:
            raise DriverRootMismatch(
                f"root {root} holds data of storage driver '{existing[0]}', not '{explicit}'; "
                f"use --storage-driver {existing[0]} or choose another root for '{explicit}'"
            )
        return explicit
    if existing:
        return existing[0]
    kind = KINDS["graph"]
    installed = set(installed_driver_names(kind))
    # Imported here: fs.backing's mount-table bindings (ctypes) are start-up cost only the aufs check needs.
    from drivebay.fs.backing import kernel_filesystems

    tried = []
    for name in AUTO_ORDER:
        if name not in installed:
            continue
        # As moby: aufs is a default only where the kernel has it, not through a FUSE fallback.
        if name == "aufs" and "aufs" not in kernel_filesystems():
            tried.append("aufs: the kernel has no aufs")
            continue
        reason = probe(load_driver(kind, name), root)
        if reason is None:
            return name
        tried.append(f"{name}: {reason}")
    raise DriverNotSupported(
        "auto-selected storage driver",
        f"no installed graph driver supports root {root} ({'; '.join(tried) or 'none of ' + ', '.join(AUTO_ORDER)})",
        "install drivebay-graphdriver-vfs, which runs anywhere, or set storage-driver",
    )


def open_graph_driver(config: Config, state: StateDB) -> GraphDriver:
    """Load, probe and initialise the graph driver ``config`` selects; its home is ``<root>/<name>``."""
    name = choose_graph_driver(config)
    loaded = load_driver(KINDS["graph"], name, echo_timings=config.debug)
    reason = probe(loaded, config.root)
    if reason is not None:
        raise DriverNotSupported(name, reason, "choose another with --storage-driver (see 'drivebay drivers')")
    return GraphDriver(loaded, config.root / name, state, config.storage_opts)
