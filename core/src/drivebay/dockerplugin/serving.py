"""Opening a drivebay driver for a Docker engine: the endpoint set of a kind, the socket, the serve loop."""

from __future__ import annotations

import dataclasses
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from drivebay.config import Config
from drivebay.dockerplugin.discovery import SOCKETS_DIR
from drivebay.dockerplugin.server import EndpointSet, PluginServer
from drivebay.errors import UsageError
from drivebay.state import StateDB

KINDS = ("graph", "volume", "network", "log")


def default_plugin_name(driver: str) -> str:
    """``drivebay-<driver>``: the plugin name Docker users type when none is given."""
    return f"drivebay-{driver}"


def default_socket(plugin: str) -> Path:
    """Where dockerd looks for plugin ``plugin``'s socket."""
    return SOCKETS_DIR / f"{plugin}.sock"


def open_endpoint_set(kind: str, driver: str, config: Config, state: StateDB) -> EndpointSet:
    """Open installed driver ``driver`` of ``kind`` on ``config``'s root, behind core's facade, as endpoints."""
    if kind == "graph":
        from drivebay.dockerplugin.graph import GraphEndpoints
        from drivebay.selection import open_graph_driver

        return GraphEndpoints(open_graph_driver(dataclasses.replace(config, storage_driver=driver), state))
    if kind == "volume":
        from drivebay.dockerplugin.volume import VolumeEndpoints
        from drivebay.facades.volume import open_volume_driver

        return VolumeEndpoints(open_volume_driver(dataclasses.replace(config, volume_driver=driver), state))
    if kind == "network":
        from drivebay.dockerplugin.network import NetworkEndpoints
        from drivebay.facades.network import open_network_driver

        return NetworkEndpoints(open_network_driver(dataclasses.replace(config, network_driver=driver), state))
    if kind == "log":
        from drivebay.dockerplugin.log import LogEndpoints
        from drivebay.facades.log import open_log_driver

        return LogEndpoints(open_log_driver(dataclasses.replace(config, log_driver=driver), state))
    raise UsageError(f"unknown driver kind {kind!r}; use one of: {', '.join(KINDS)}")


def serve_until_signalled(server: PluginServer) -> None:
    """Serve in this thread until SIGTERM or SIGINT, then close the server (its socket goes too)."""

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever to return, which runs in this very thread: ask from another.
        threading.Thread(target=server.shutdown, daemon=True).start()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        implements = ", ".join(server.routes.implements)
        print(f"drivebay: serving on {server.path} ({implements})", file=sys.stderr, flush=True)
        server.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.close()
