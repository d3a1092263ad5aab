"""Docker's legacy (v1) plugin protocol, both ways.

Serving (:mod:`.server` with one endpoint module per kind: :mod:`.volume`,
:mod:`.graph`, :mod:`.network`, :mod:`.log`) exposes any installed drivebay
driver to a Docker engine as ``/Plugin.Activate`` plus the kind's
``/VolumeDriver.*``, ``/GraphDriver.*``, ``/NetworkDriver.*`` (with
``/IpamDriver.*``) or ``/LogDriver.*`` endpoints: JSON over HTTP on a unix
socket, with raw tar bodies for layer diffs and length-prefixed protobuf for
logs.

Using (:mod:`.discovery`, :mod:`.client`, :mod:`.remote`) makes drivebay the
client of a plugin: a driver name ``docker-plugin:NAME`` in config loads a
driver class whose hooks are HTTP calls to plugin ``NAME``, found the way
dockerd finds it.
"""

from __future__ import annotations

PREFIX = "docker-plugin:"
"""A driver name starting with this names a Docker plugin instead of an installed driver."""

IMPLEMENTS: dict[str, tuple[str, ...]] = {
    "graph": ("GraphDriver",),
    "volume": ("VolumeDriver",),
    "network": ("NetworkDriver", "IpamDriver"),
    "log": ("LogDriver",),
}
"""What ``Plugin.Activate`` answers for a served driver of each kind."""

INTERFACE_TYPES: dict[str, tuple[str, ...]] = {
    "graph": ("docker.graphdriver/1.0",),
    "volume": ("docker.volumedriver/1.0",),
    "network": ("docker.networkdriver/1.0", "docker.ipamdriver/1.0"),
    "log": ("docker.logdriver/1.0",),
}
"""A managed (v2) plugin's ``Interface.Types`` for each kind."""


def plugin_name(driver_name: str) -> str | None:
    """The plugin named by ``docker-plugin:NAME``, or ``None`` for an ordinary driver name."""
    return driver_name[len(PREFIX) :] if driver_name.startswith(PREFIX) else None
