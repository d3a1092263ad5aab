"""``drivebay-cni-bridge``: the bridge driver as a CNI plugin (CNI spec 1.1).

The runtime (libcni) runs the executable with ``CNI_COMMAND`` and friends in
the environment and the network configuration on stdin. A CNI network
``name`` is a drivebay network of that name, created on the first ADD from
the config (``bridge``, ``mtu``, ``ipMasq``, ``internal``, ``ipam.subnet``,
``ipam.gateway``); an attachment is an endpoint keyed by container ID and
``CNI_IFNAME``. Results and errors go to stdout as JSON; errors exit 1.

The state root comes from ``DRIVEBAY_ROOT`` or ``DRIVEBAY_CONFIG``, as for
every drivebay executable without flags. One flock per root serialises
concurrent invocations, because libcni runs plugins in parallel.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from drivebay.config import load_config_from
from drivebay.errors import DrivebayError, NetworkNotFound
from drivebay.facades.network import NetworkDriver, open_network_driver
from drivebay.hookspecs.network import Endpoint, Network, PortMapping
from drivebay.state import StateDB
from drivebay_netdriver_bridge.driver import (
    OPT_BRIDGE_NAME,
    OPT_INTERNAL,
    OPT_MASQUERADE,
    OPT_MTU,
    bridge_name,
)
from drivebay_netdriver_bridge.namespaces import namespace_alive, socket_in

SPEC_VERSION = "1.1.0"
SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
VALID_ATTACHMENTS = "cni.dev/valid-attachments"

# Error codes fixed by the CNI spec; 100 and up are the plugin's own.
INCOMPATIBLE_VERSION = 1
CONTAINER_UNKNOWN = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
NOT_AVAILABLE = 50
DRIVEBAY_ERROR = 100


class CniError(Exception):
    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code, self.msg, self.details = code, msg, details


def _env(name: str, required: bool = True) -> str:
    value = os.environ.get(name, "")
    if required and not value:
        raise CniError(INVALID_ENVIRONMENT, f"{name} is not set", f"libcni sets {name} for this command")
    return value


def _read_config(raw: str) -> dict[str, Any]:
    try:
        conf = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CniError(DECODE_FAILURE, "network configuration on stdin is not JSON", str(exc)) from exc
    if not isinstance(conf, dict) or not conf.get("name"):
        raise CniError(INVALID_CONFIG, "network configuration has no 'name'")
    version = str(conf.get("cniVersion", ""))
    if version not in SUPPORTED_VERSIONS:
        raise CniError(
            INCOMPATIBLE_VERSION,
            f"cniVersion {version!r} is not supported",
            f"supported: {', '.join(SUPPORTED_VERSIONS)}",
        )
    return conf


def _network_options(conf: Mapping[str, Any]) -> dict[str, str]:
    options = {}
    if conf.get("bridge"):
        options[OPT_BRIDGE_NAME] = str(conf["bridge"])
    if conf.get("mtu"):
        options[OPT_MTU] = str(conf["mtu"])
    if "ipMasq" in conf:
        options[OPT_MASQUERADE] = str(bool(conf["ipMasq"])).lower()
    if conf.get("internal"):
        options[OPT_INTERNAL] = "true"
    return options


def _ensure_network(driver: NetworkDriver, conf: Mapping[str, Any]) -> Network:
    try:
        return driver.network(str(conf["name"]))
    except NetworkNotFound:
        ipam = conf.get("ipam") or {}
        try:
            subnet = ipaddress.IPv4Network(ipam["subnet"]) if ipam.get("subnet") else None
            gateway = ipaddress.IPv4Address(ipam["gateway"]) if ipam.get("gateway") else None
        except ValueError as exc:
            raise CniError(INVALID_CONFIG, f"bad ipam subnet or gateway: {exc}") from exc
        return driver.create_network(str(conf["name"]), subnet, gateway, _network_options(conf))


def _ports(conf: Mapping[str, Any]) -> list[PortMapping]:
    mappings = (conf.get("runtimeConfig") or {}).get("portMappings") or []
    try:
        return [
            PortMapping(
                int(m["hostPort"]),
                int(m["containerPort"]),
                str(m.get("protocol", "tcp")).lower(),
                ipaddress.IPv4Address(m["hostIP"]) if m.get("hostIP") else None,
            )
            for m in mappings
        ]
    except (KeyError, ValueError) as exc:
        raise CniError(INVALID_CONFIG, f"bad runtimeConfig.portMappings entry: {exc}") from exc


def _result(conf: Mapping[str, Any], network: Network, endpoint: Endpoint) -> dict[str, Any]:
    version = str(conf["cniVersion"])
    ip: dict[str, Any] = {"address": str(endpoint.address), "interface": 2}
    if version.startswith("0.3"):
        ip["version"] = "4"
    routes = []
    if not network.internal:
        ip["gateway"] = str(network.gateway)
        routes.append({"dst": "0.0.0.0/0", "gw": str(network.gateway)})
    return {
        "cniVersion": version,
        "interfaces": [
            {"name": bridge_name(network)},
            {"name": endpoint.host_ifname},
            {"name": endpoint.ifname, "mac": endpoint.mac, "sandbox": str(endpoint.netns)},
        ],
        "ips": [ip],
        "routes": routes,
        "dns": conf.get("dns") or {},
    }


def cmd_add(driver: NetworkDriver, conf: Mapping[str, Any]) -> dict[str, Any]:
    container, ifname = _env("CNI_CONTAINERID"), _env("CNI_IFNAME")
    netns = Path(_env("CNI_NETNS"))
    network = _ensure_network(driver, conf)
    existing = driver.find_endpoint(network, container, ifname)
    endpoint = existing or driver.connect(network.name, netns, None, _ports(conf), container, ifname)
    return _result(conf, network, endpoint)


def cmd_del(driver: NetworkDriver, conf: Mapping[str, Any]) -> None:
    container, ifname = _env("CNI_CONTAINERID"), _env("CNI_IFNAME")
    try:
        driver.disconnect(str(conf["name"]), None, container, ifname)
    except NetworkNotFound:
        return


def cmd_check(driver: NetworkDriver, conf: Mapping[str, Any]) -> None:
    container, ifname = _env("CNI_CONTAINERID"), _env("CNI_IFNAME")
    netns = Path(_env("CNI_NETNS"))
    try:
        network = driver.network(str(conf["name"]))
    except NetworkNotFound as exc:
        raise CniError(CONTAINER_UNKNOWN, str(exc)) from exc
    endpoint = driver.find_endpoint(network, container, ifname)
    if endpoint is None:
        raise CniError(CONTAINER_UNKNOWN, f"container {container} has no attachment {ifname} on {network.name}")
    if not namespace_alive(netns):
        raise CniError(CONTAINER_UNKNOWN, f"network namespace {netns} is gone")
    with socket_in(netns) as ipr:
        indexes = ipr.link_lookup(ifname=endpoint.ifname)
        found = ipr.get_addr(family=2, index=indexes[0]) if indexes else []
        addresses = {f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}" for a in found}
    if str(endpoint.address) not in addresses:
        raise CniError(
            DRIVEBAY_ERROR,
            f"interface {endpoint.ifname} in {netns} lacks address {endpoint.address}",
            f"found: {', '.join(sorted(addresses)) or 'none'}",
        )


def cmd_gc(driver: NetworkDriver, conf: Mapping[str, Any]) -> None:
    valid = conf.get(VALID_ATTACHMENTS) or []
    keep = {(str(a["containerID"]), str(a["ifname"])) for a in valid}
    try:
        driver.collect_garbage(str(conf["name"]), keep)
    except NetworkNotFound:
        driver.reconcile()


def _root_lock(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    return root / "bridge-cni.lock"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def run(command: str, raw_config: str) -> dict[str, Any] | None:
    """Run one CNI command; returns the JSON to print, if any. Raises ``CniError``."""
    if command == "VERSION":
        return {"cniVersion": SPEC_VERSION, "supportedVersions": list(SUPPORTED_VERSIONS)}
    handlers = {"ADD": cmd_add, "DEL": cmd_del, "CHECK": cmd_check, "GC": cmd_gc}
    if command not in (*handlers, "STATUS"):
        raise CniError(
            INVALID_ENVIRONMENT, f"CNI_COMMAND {command!r} is unknown", "use ADD, DEL, CHECK, STATUS, GC or VERSION"
        )
    conf = _read_config(raw_config)
    config = load_config_from(None)
    state = StateDB.for_root(config.root)
    try:
        with _locked(_root_lock(config.root)):
            try:
                driver = open_network_driver(config, state)
            except DrivebayError as exc:
                code = NOT_AVAILABLE if command == "STATUS" else DRIVEBAY_ERROR
                raise CniError(code, f"network driver unavailable: {exc}") from exc
            if command == "STATUS":
                return None
            try:
                result = handlers[command](driver, conf)
            except DrivebayError as exc:
                raise CniError(DRIVEBAY_ERROR, str(exc), type(exc).__name__) from exc
    finally:
        state.close()
    return result


def main() -> int:
    command = os.environ.get("CNI_COMMAND", "")
    try:
        raw = "" if command == "VERSION" else sys.stdin.read()
        output = run(command, raw)
    except CniError as exc:
        version = SPEC_VERSION
        json.dump({"cniVersion": version, "code": exc.code, "msg": exc.msg, "details": exc.details}, sys.stdout)
        sys.stdout.write("\n")
        return 1
    except OSError as exc:
        json.dump({"cniVersion": SPEC_VERSION, "code": IO_FAILURE, "msg": str(exc), "details": ""}, sys.stdout)
        sys.stdout.write("\n")
        return 1
    if output is not None:
        json.dump(output, sys.stdout)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
