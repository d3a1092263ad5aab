"""``config.json`` of a managed (v2) Docker plugin that runs ``drivebay plugin serve``.

The same driver served by ``drivebay plugin serve`` can be packaged with
``docker plugin create NAME DIR`` from a directory holding this file and a
``rootfs/`` with drivebay installed. Keys follow moby's ``types.PluginConfig``.
"""

from __future__ import annotations

from typing import Any

from drivebay.dockerplugin import INTERFACE_TYPES
from drivebay.errors import UsageError

PLUGIN_SOCKETS = "/run/docker/plugins"
"""Where a managed plugin's socket is, inside its own root."""

DATA_ROOT = "/var/lib/drivebay"


def plugin_config(kind: str, driver: str, plugin: str) -> dict[str, Any]:
    """The ``config.json`` for serving ``driver`` of ``kind`` as managed plugin ``plugin``."""
    if kind not in INTERFACE_TYPES:
        raise UsageError(f"unknown driver kind {kind!r}; use one of: {', '.join(INTERFACE_TYPES)}")
    socket = f"{plugin}.sock"
    config: dict[str, Any] = {
        "Description": f"drivebay {kind} driver '{driver}'",
        "Documentation": "docs/docker-plugins.md in drivebay",
        "Entrypoint": [
            "drivebay", "--root", DATA_ROOT, "plugin", "serve",
            "--kind", kind, "--driver", driver, "--name", plugin, "--socket", f"{PLUGIN_SOCKETS}/{socket}",
        ],
        "WorkDir": "/",
        "Interface": {"Types": list(INTERFACE_TYPES[kind]), "Socket": socket},
        "Network": {"Type": "host" if kind == "network" else "none"},
        "Linux": {
            "Capabilities": ["CAP_SYS_ADMIN"] + (["CAP_NET_ADMIN"] if kind == "network" else []),
            "AllowAllDevices": kind in ("graph", "volume"),
            "Devices": None,
        },
        "Mounts": [],
        "Env": [],
        "Args": {"Name": "", "Settable": None, "Value": None, "Description": ""},
    }
    if kind in ("graph", "volume"):
        # Paths the plugin answers (a layer's Dir, a volume's Mountpoint) must be visible to dockerd.
        config["PropagatedMount"] = DATA_ROOT
    return config
