"""``GraphDriver.*``: a drivebay graph driver served to Docker (``dockerd --experimental -s PLUGIN``).

Docker's requests and answers, exactly (moby ``daemon/graphdriver/proxy.go``):
requests carry ``ID``, ``Parent``, ``MountLabel`` (and ``StorageOpt`` for the
creates); answers carry ``Err`` and one of ``Dir``, ``Exists``, ``Status``
(pairs), ``Changes`` (``[{Path, Kind}]``, Kind 0 modify, 1 add, 2 delete),
``Size``, ``Metadata`` or ``Capabilities`` (``{ReproducesExactDiffs}``).
``Diff`` answers a raw layer tar, streamed; ``ApplyDiff`` takes one as the
body (chunked), with ``id`` and ``parent`` in the query.

The driver runs behind core's facade, so Docker gets core's registry,
refcounts, crash recovery and naive diffs like any drivebay caller. An empty
``Parent`` means none, as in Docker.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, BinaryIO

from drivebay.dockerplugin.server import Endpoint, PluginRequest, Streamed
from drivebay.errors import PluginError
from drivebay.facades.graph import GraphDriver
from drivebay.hookspecs.graph import ChangeKind, GraphCapabilities

SETTLE_SECONDS = 10.0
"""How long a Create waits for another connection's half-made layer of the same ID to be finished or removed."""

CHANGE_KINDS = {ChangeKind.MODIFY: 0, ChangeKind.ADD: 1, ChangeKind.DELETE: 2}
"""moby's ``archive.ChangeType`` numbers."""


def _id(body: dict[str, Any], method: str, key: str = "ID") -> str:
    layer_id = body.get(key)
    if not isinstance(layer_id, str) or not layer_id:
        raise PluginError(f"GraphDriver.{method} needs a layer ID in '{key}'")
    return layer_id


def _parent(body: dict[str, Any], key: str = "Parent") -> str | None:
    parent = body.get(key)
    return str(parent) if parent else None


def capabilities_json(capabilities: GraphCapabilities) -> dict[str, Any]:
    """drivebay's full :class:`GraphCapabilities`, which Docker ignores and drivebay's client reads."""
    data = dataclasses.asdict(capabilities)
    data["extra"] = dict(capabilities.extra)
    return data


class GraphEndpoints:
    """Serves one opened graph driver."""

    implements: tuple[str, ...] = ("GraphDriver",)

    def __init__(self, driver: GraphDriver) -> None:
        self.driver = driver

    def endpoints(self) -> dict[str, Endpoint]:
        return {
            "GraphDriver.Init": self.init,
            "GraphDriver.Capabilities": self.capabilities,
            "GraphDriver.Create": self.create,
            "GraphDriver.CreateReadWrite": self.create_rw,
            "GraphDriver.Remove": self.remove,
            "GraphDriver.Get": self.get,
            "GraphDriver.Put": self.put,
            "GraphDriver.Exists": self.exists,
            "GraphDriver.Status": self.status,
            "GraphDriver.GetMetadata": self.metadata,
            "GraphDriver.Cleanup": self.cleanup,
            "GraphDriver.Diff": self.diff,
            "GraphDriver.Changes": self.changes,
            "GraphDriver.ApplyDiff": self.apply_diff,
            "GraphDriver.DiffSize": self.diff_size,
        }

    def close(self) -> None:
        """Nothing runs in the background; mounts stay for Docker's ``Cleanup``."""

    def init(self, request: PluginRequest) -> dict[str, Any]:
        # The driver was initialised on drivebay's root when the server started. Docker's home
        # (<data-root>/<plugin>) is not used: the layers live where drivebay's own tools find them.
        request.json()
        return {}

    def capabilities(self, request: PluginRequest) -> dict[str, Any]:
        caps = self.driver.capabilities
        # drivebay writes its own canonical layer tars, not the bytes Docker was given, so Docker must keep
        # tar-split data to export a layer exactly (docker save, push).
        return {
            "Capabilities": {"ReproducesExactDiffs": False},
            "DrivebayCapabilities": capabilities_json(caps),
        }

    def _settled(self, layer_id: str) -> str:
        """``layer_id`` once no other connection is still creating or removing it.

        A client that dies during ApplyDiff leaves its layer half-made until this
        server reads the end of the cut body and removes it; a client retrying at
        once must find it gone, as it would in-process.
        """
        deadline = time.monotonic() + SETTLE_SECONDS
        while time.monotonic() < deadline:
            rows = self.driver.state.query(
                "SELECT state FROM graph_layers WHERE driver=? AND id=?", (self.driver.name, layer_id)
            )
            if not rows or rows[0]["state"] == "ready":
                break
            time.sleep(0.02)
        return layer_id

    def create(self, request: PluginRequest) -> dict[str, Any]:
        body = request.json()
        self.driver.create(self._settled(_id(body, "Create")), _parent(body), _storage_opts(body))
        return {}

    def create_rw(self, request: PluginRequest) -> dict[str, Any]:
        body = request.json()
        self.driver.create_rw(self._settled(_id(body, "CreateReadWrite")), _parent(body), _storage_opts(body))
        return {}

    def remove(self, request: PluginRequest) -> dict[str, Any]:
        self.driver.remove(_id(request.json(), "Remove"))
        return {}

    def get(self, request: PluginRequest) -> dict[str, Any]:
        return {"Dir": str(self.driver.get(_id(request.json(), "Get")))}

    def put(self, request: PluginRequest) -> dict[str, Any]:
        layer_id = _id(request.json(), "Put")
        # Docker's drivers (and drivebay's hook contract) let Put succeed when nothing is mounted.
        if self.driver.refcount(layer_id):
            self.driver.put(layer_id)
        return {}

    def exists(self, request: PluginRequest) -> dict[str, Any]:
        return {"Exists": self.driver.exists(_id(request.json(), "Exists"))}

    def status(self, request: PluginRequest) -> dict[str, Any]:
        return {"Status": [[key, value] for key, value in self.driver.status()]}

    def metadata(self, request: PluginRequest) -> dict[str, Any]:
        return {"Metadata": self.driver.metadata(_id(request.json(), "GetMetadata"))}

    def cleanup(self, request: PluginRequest) -> dict[str, Any]:
        self.driver.cleanup()
        return {}

    def diff(self, request: PluginRequest) -> Streamed:
        body = request.json()
        layer_id, parent = _id(body, "Diff"), _parent(body)
        # Checked before the answer starts, so a missing layer is an error status, not a cut stream.
        self.driver.metadata(layer_id)

        def write(out: BinaryIO) -> None:
            self.driver.diff(layer_id, out, parent)

        return Streamed(write, "application/x-tar")

    def changes(self, request: PluginRequest) -> dict[str, Any]:
        body = request.json()
        changes = self.driver.changes(_id(body, "Changes"), _parent(body))
        return {"Changes": [{"Path": c.path, "Kind": CHANGE_KINDS[c.kind]} for c in changes]}

    def apply_diff(self, request: PluginRequest) -> dict[str, Any]:
        layer_id = _id(dict(request.query), "ApplyDiff", "id")
        return {"Size": self.driver.apply_diff(layer_id, request.body)}

    def diff_size(self, request: PluginRequest) -> dict[str, Any]:
        body = request.json()
        return {"Size": self.driver.diff_size(_id(body, "DiffSize"), _parent(body))}


def _storage_opts(body: dict[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (body.get("StorageOpt") or {}).items()}
