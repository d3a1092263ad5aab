"""``VolumeDriver.*``: a drivebay volume driver served to Docker.

Docker's requests and answers, exactly (moby ``volume/drivers/proxy.go``):
Create ``{Name, Opts}``; Remove ``{Name}``; Mount and Unmount ``{Name, ID}``,
Mount answering ``{Mountpoint}``; Path ``{Name}`` answering ``{Mountpoint}``;
Get ``{Name}`` answering ``{Volume: {Name, Mountpoint, CreatedAt, Status}}``;
List answering ``{Volumes: [...]}``; Capabilities answering
``{Capabilities: {Scope}}``. Every answer may carry ``Err``. Mount IDs are the
callers core counts, so Docker's mount and unmount pairs keep the volume
mounted exactly while a container uses it.
"""

from __future__ import annotations

from typing import Any

from drivebay.dockerplugin.server import Endpoint, PluginRequest
from drivebay.errors import PluginError
from drivebay.facades.volume import VolumeDriver, VolumeView


def _name(body: dict[str, Any], method: str) -> str:
    name = body.get("Name")
    if not isinstance(name, str) or not name:
        raise PluginError(f"VolumeDriver.{method} needs a volume name in 'Name'")
    return name


def volume_json(view: VolumeView) -> dict[str, Any]:
    """Docker's ``volume.Volume`` of the plugin API for ``view``."""
    data = view.to_json()
    return {
        "Name": data["Name"],
        "Mountpoint": data["Mountpoint"],
        "CreatedAt": data["CreatedAt"],
        "Status": data["Status"],
    }


class VolumeEndpoints:
    """Serves one opened volume driver."""

    implements: tuple[str, ...] = ("VolumeDriver",)

    def __init__(self, driver: VolumeDriver) -> None:
        self.driver = driver

    def endpoints(self) -> dict[str, Endpoint]:
        return {
            "VolumeDriver.Create": self.create,
            "VolumeDriver.Remove": self.remove,
            "VolumeDriver.Mount": self.mount,
            "VolumeDriver.Unmount": self.unmount,
            "VolumeDriver.Path": self.path,
            "VolumeDriver.Get": self.get,
            "VolumeDriver.List": self.list,
            "VolumeDriver.Capabilities": self.capabilities,
        }

    def close(self) -> None:
        """Nothing runs in the background."""

    def create(self, request: PluginRequest) -> dict[str, Any]:
        body = request.json()
        options = {str(k): str(v) for k, v in (body.get("Opts") or {}).items()}
        self.driver.create(_name(body, "Create"), options)
        return {}

    def remove(self, request: PluginRequest) -> dict[str, Any]:
        self.driver.remove(_name(request.json(), "Remove"))
        return {}

    def mount(self, request: PluginRequest) -> dict[str, Any]:
        body = request.json()
        return {"Mountpoint": str(self.driver.mount(_name(body, "Mount"), str(body.get("ID") or "")))}

    def unmount(self, request: PluginRequest) -> dict[str, Any]:
        body = request.json()
        self.driver.unmount(_name(body, "Unmount"), str(body.get("ID") or ""))
        return {}

    def path(self, request: PluginRequest) -> dict[str, Any]:
        return {"Mountpoint": str(self.driver.path(_name(request.json(), "Path")))}

    def get(self, request: PluginRequest) -> dict[str, Any]:
        return {"Volume": volume_json(self.driver.inspect(_name(request.json(), "Get")))}

    def list(self, request: PluginRequest) -> dict[str, Any]:
        return {"Volumes": [volume_json(view) for view in self.driver.list()]}

    def capabilities(self, request: PluginRequest) -> dict[str, Any]:
        return {"Capabilities": {"Scope": self.driver.capabilities.scope}}
