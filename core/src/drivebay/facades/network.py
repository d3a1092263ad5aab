"""The typed facade over a network driver: what the CLI and the CNI plugin use instead of ``pm.hook``.

Core keeps, once for every driver:
- the records of networks and endpoints in ``drivebay.db`` (``net_networks``,
  ``net_endpoints``), with name, subnet, options, sandbox and address;
- the order of the hooks and the undo of a half-done create or connect;
- crash safety: a network or endpoint is recorded as ``creating`` with the
  owning PID, in the same transaction as its IPAM allocation, before the
  driver touches the host, and becomes ``ready`` only when complete;
- reconciliation at startup: endpoints whose sandbox namespace is gone (or was
  replaced) and records left ``creating`` by a dead process are torn down and
  their addresses released; then the driver removes whatever else it holds
  (``net_reconcile``). This is the leak host-local IPAM suffers from.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drivebay.errors import (
    AddressUnavailable,
    InvalidConfig,
    NetworkExists,
    NetworkInUse,
    NetworkNotFound,
)
from drivebay.hookspecs.network import Endpoint, IpamPool, Network, NetworkCapabilities, PortMapping
from drivebay.loader import KINDS, LoadedDriver, load_driver
from drivebay.processes import pid_alive
from drivebay.state import StateDB

if TYPE_CHECKING:
    from drivebay.config import Config

SCHEMA = """
CREATE TABLE IF NOT EXISTS net_networks (
    driver TEXT NOT NULL,
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    subnet TEXT NOT NULL,
    gateway TEXT NOT NULL,
    options TEXT NOT NULL,
    driver_info TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('creating', 'ready')),
    pid INTEGER NOT NULL,
    created REAL NOT NULL,
    UNIQUE (driver, name)
);
CREATE TABLE IF NOT EXISTS net_endpoints (
    id TEXT PRIMARY KEY,
    network_id TEXT NOT NULL REFERENCES net_networks (id),
    container_id TEXT NOT NULL,
    request_ifname TEXT NOT NULL,
    netns TEXT NOT NULL,
    netns_inode INTEGER NOT NULL,
    address TEXT NOT NULL,
    ports TEXT NOT NULL,
    host_ifname TEXT NOT NULL,
    mac TEXT NOT NULL,
    ifname TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('creating', 'ready')),
    pid INTEGER NOT NULL,
    created REAL NOT NULL,
    UNIQUE (network_id, container_id, request_ifname)
)
"""

NAME_PATTERN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
"""Docker's rule for network names."""

ID_PREFIX = re.compile(r"[0-9a-f]{3,64}")
"""What ``network inspect`` and friends accept as an abbreviated network ID."""


@dataclass(frozen=True)
class NetworkRecord:
    """A network with its endpoints, as ``network ls`` and ``network inspect`` show it."""

    network: Network
    driver: str
    endpoints: tuple[Endpoint, ...]
    created: float

    def to_json(self, oper_info: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, Any]:
        return {
            "name": self.network.name,
            "id": self.network.id,
            "driver": self.driver,
            "subnet": str(self.network.subnet),
            "gateway": str(self.network.gateway),
            "internal": self.network.internal,
            "options": dict(self.network.options),
            "driver_info": dict(self.network.driver_info),
            "created": self.created,
            "endpoints": [endpoint_json(ep, (oper_info or {}).get(ep.id)) for ep in self.endpoints],
        }


def endpoint_json(endpoint: Endpoint, oper_info: Mapping[str, str] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": endpoint.id,
        "container_id": endpoint.container_id,
        "netns": str(endpoint.netns),
        "ifname": endpoint.ifname,
        "host_ifname": endpoint.host_ifname,
        "mac": endpoint.mac,
        "address": str(endpoint.address),
        "ports": [str(p) for p in endpoint.ports],
    }
    if oper_info is not None:
        data["oper_info"] = dict(oper_info)
    return data


def _nsfs_device() -> int:
    return os.stat("/proc/self/ns/net").st_dev


def netns_inode(path: Path) -> int:
    """The inode of the network namespace at ``path``; ``InvalidConfig`` when it is not one."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InvalidConfig(f"network namespace '{path}' cannot be opened ({exc.strerror}); create it first") from exc
    if st.st_dev != _nsfs_device():
        raise InvalidConfig(
            f"'{path}' is not a network namespace; pass a path like /run/netns/NAME or /proc/PID/ns/net"
        )
    return st.st_ino


def _netns_is(path: Path, inode: int) -> bool:
    """Whether ``path`` still names the namespace the endpoint joined (not gone, not replaced)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_dev == _nsfs_device() and st.st_ino == inode


def _network_from_row(row: sqlite3.Row) -> Network:
    return Network(
        id=str(row["id"]),
        name=str(row["name"]),
        subnet=IPv4Network(row["subnet"]),
        gateway=IPv4Address(row["gateway"]),
        options=json.loads(row["options"]),
        driver_info=json.loads(row["driver_info"]),
    )


def _endpoint_from_row(row: sqlite3.Row) -> Endpoint:
    return Endpoint(
        id=str(row["id"]),
        network_id=str(row["network_id"]),
        container_id=str(row["container_id"]),
        netns=Path(row["netns"]),
        address=ipaddress.IPv4Interface(row["address"]),
        request_ifname=str(row["request_ifname"]),
        ports=tuple(PortMapping.from_json(p) for p in json.loads(row["ports"])),
        host_ifname=str(row["host_ifname"]),
        mac=str(row["mac"]),
        ifname=str(row["ifname"]),
    )


class NetworkDriver:
    """A loaded, initialised network driver with core's records, ordering and reconciliation."""

    def __init__(
        self, loaded: LoadedDriver, home: Path, state: StateDB, options: Mapping[str, str] | None = None
    ) -> None:
        self.loaded = loaded
        self.name = loaded.name
        self.home = home
        self.state = state
        self._hook = loaded.hook
        self.capabilities: NetworkCapabilities = self._hook.net_capabilities()
        home.mkdir(parents=True, exist_ok=True)
        state.ensure_schema(SCHEMA)
        self._hook.net_init(home=home, state=state, options=dict(options or {}))
        self.reconciled: list[str] = self.reconcile()

    # -- records ----------------------------------------------------------

    def _network_row(self, name_or_id: str, *, ready_only: bool = True) -> sqlite3.Row | None:
        rows = self.state.query(
            "SELECT * FROM net_networks WHERE driver=? AND (name=? OR id=?) ORDER BY name=? DESC",
            (self.name, name_or_id, name_or_id, name_or_id),
        )
        if not rows and ID_PREFIX.fullmatch(name_or_id):
            rows = self.state.query(
                "SELECT * FROM net_networks WHERE driver=? AND id LIKE ?", (self.name, f"{name_or_id}%")
            )
        rows = [r for r in rows if r["state"] == "ready" or not ready_only]
        return rows[0] if len(rows) == 1 or (rows and rows[0]["name"] == name_or_id) else None

    def network(self, name_or_id: str) -> Network:
        """The ready network named ``name_or_id`` (a name, an ID or a unique ID prefix)."""
        row = self._network_row(name_or_id)
        if row is None:
            raise NetworkNotFound(
                f"network '{name_or_id}' does not exist in network driver '{self.name}'; "
                "see 'drivebay network ls' or create it with 'drivebay network create'"
            )
        return _network_from_row(row)

    def endpoints(self, network_id: str | None = None) -> list[Endpoint]:
        """Ready endpoints, of one network or of all."""
        if network_id is None:
            rows = self.state.query("SELECT * FROM net_endpoints WHERE state='ready' ORDER BY created, id")
        else:
            rows = self.state.query(
                "SELECT * FROM net_endpoints WHERE network_id=? AND state='ready' ORDER BY created, id",
                (network_id,),
            )
        return [_endpoint_from_row(r) for r in rows]

    def networks(self) -> list[NetworkRecord]:
        rows = self.state.query(
            "SELECT * FROM net_networks WHERE driver=? AND state='ready' ORDER BY created, name", (self.name,)
        )
        return [
            NetworkRecord(_network_from_row(r), self.name, tuple(self.endpoints(str(r["id"]))), float(r["created"]))
            for r in rows
        ]

    def inspect(self, name_or_id: str) -> dict[str, Any]:
        """``network inspect``: the record, with each endpoint's live facts from the driver."""
        network = self.network(name_or_id)
        rows = self.state.query("SELECT created FROM net_networks WHERE id=?", (network.id,))
        record = NetworkRecord(network, self.name, tuple(self.endpoints(network.id)), float(rows[0]["created"]))
        oper = {ep.id: dict(self._hook.net_endpoint_oper_info(network=network, endpoint=ep)) for ep in record.endpoints}
        return record.to_json(oper)

    def find_endpoint(self, network: Network, container_id: str, request_ifname: str = "") -> Endpoint | None:
        rows = self.state.query(
            "SELECT * FROM net_endpoints WHERE network_id=? AND container_id=? AND request_ifname=? AND state='ready'",
            (network.id, container_id, request_ifname),
        )
        return _endpoint_from_row(rows[0]) if rows else None

    # -- networks ---------------------------------------------------------

    def create_network(
        self,
        name: str,
        subnet: IPv4Network | None = None,
        gateway: IPv4Address | None = None,
        options: Mapping[str, str] | None = None,
    ) -> Network:
        """Create network ``name``; refused for a taken name, an overlapping subnet or bridge."""
        if not NAME_PATTERN.fullmatch(name):
            raise InvalidConfig(f"network name '{name}' is invalid; use letters, digits, '_', '.' and '-'")
        options = dict(options or {})
        unknown = sorted(set(options) - set(self.capabilities.options))
        if unknown:
            raise InvalidConfig(
                f"network driver '{self.name}' has no option {', '.join(map(repr, unknown))}; "
                f"accepted: {', '.join(self.capabilities.options)}"
            )
        network_id = secrets.token_hex(32)
        with self.state.transaction() as db:
            if self.state.query("SELECT 1 FROM net_networks WHERE driver=? AND name=?", (self.name, name)):
                raise NetworkExists(f"network '{name}' already exists; choose another name or remove it first")
            pool: IpamPool = self._hook.net_ipam_request_pool(network_id=network_id, subnet=subnet, gateway=gateway)
            network = Network(network_id, name, pool.subnet, pool.gateway, options)
            db.execute(
                "INSERT INTO net_networks VALUES (?, ?, ?, ?, ?, ?, '{}', 'creating', ?, ?)",
                (
                    self.name,
                    network_id,
                    name,
                    str(pool.subnet),
                    str(pool.gateway),
                    json.dumps(options),
                    os.getpid(),
                    time.time(),
                ),
            )
        try:
            info = dict(self._hook.net_create_network(network=network))
        except BaseException:
            self._drop_network(network)
            raise
        network = replace(network, driver_info=info)
        with self.state.transaction() as db:
            db.execute(
                "UPDATE net_networks SET state='ready', driver_info=? WHERE id=?", (json.dumps(info), network_id)
            )
        return network

    def _drop_network(self, network: Network) -> None:
        self._hook.net_delete_network(network=network)
        with self.state.transaction() as db:
            self._hook.net_ipam_release_pool(network_id=network.id)
            db.execute("DELETE FROM net_networks WHERE id=?", (network.id,))

    def remove_network(self, name_or_id: str, force: bool = False) -> None:
        """Remove a network; refused while endpoints are connected unless ``force``, which disconnects them."""
        network = self.network(name_or_id)
        endpoints = self.endpoints(network.id)
        if endpoints and not force:
            raise NetworkInUse(
                f"network '{network.name}' has {len(endpoints)} connected endpoint(s) "
                f"({', '.join(str(ep.netns) for ep in endpoints)}); disconnect them or use 'network rm -f'"
            )
        for endpoint in endpoints:
            self._teardown(network, endpoint)
        self._drop_network(network)

    # -- endpoints --------------------------------------------------------

    def connect(
        self,
        network_name: str,
        netns: Path,
        address: IPv4Address | None = None,
        ports: Sequence[PortMapping] = (),
        container_id: str | None = None,
        ifname: str = "",
    ) -> Endpoint:
        """Attach the namespace at ``netns`` to a network; all or nothing.

        ``container_id`` defaults to the namespace path. Returns the ready endpoint.
        """
        network = self.network(network_name)
        inode = netns_inode(netns)
        container_id = container_id if container_id is not None else str(netns)
        if ports and network.internal:
            raise InvalidConfig(f"network '{network.name}' is internal; ports cannot be published from it")
        endpoint_id = secrets.token_hex(32)
        with self.state.transaction() as db:
            if self.find_endpoint(network, container_id, ifname) is not None:
                raise NetworkExists(
                    f"'{container_id}' is already connected to network '{network.name}'; disconnect it first"
                )
            self._check_ports_free(ports)
            allocated = self._hook.net_ipam_request_address(network=network, endpoint_id=endpoint_id, address=address)
            endpoint = Endpoint(endpoint_id, network.id, container_id, netns, allocated, ifname, tuple(ports))
            db.execute(
                "INSERT INTO net_endpoints VALUES (?, ?, ?, ?, ?, ?, ?, ?, '', '', '', 'creating', ?, ?)",
                (
                    endpoint_id,
                    network.id,
                    container_id,
                    ifname,
                    str(netns),
                    inode,
                    str(allocated),
                    json.dumps([p.to_json() for p in ports]),
                    os.getpid(),
                    time.time(),
                ),
            )
        try:
            interface = self._hook.net_create_endpoint(network=network, endpoint=endpoint)
            endpoint = replace(endpoint, host_ifname=interface.host_ifname, mac=interface.mac)
            joined = self._hook.net_join(network=network, endpoint=endpoint, sandbox=netns)
            endpoint = replace(endpoint, ifname=joined.ifname)
            self._hook.net_program_external_connectivity(network=network, endpoint=endpoint)
        except BaseException:
            self._teardown(network, endpoint)
            raise
        with self.state.transaction() as db:
            db.execute(
                "UPDATE net_endpoints SET state='ready', host_ifname=?, mac=?, ifname=? WHERE id=?",
                (endpoint.host_ifname, endpoint.mac, endpoint.ifname, endpoint_id),
            )
        return endpoint

    def _check_ports_free(self, ports: Iterable[PortMapping]) -> None:
        wanted = {(p.host_port, p.protocol) for p in ports}
        if not wanted:
            return
        for row in self.state.query("SELECT ports FROM net_endpoints"):
            for taken in map(PortMapping.from_json, json.loads(row["ports"])):
                if (taken.host_port, taken.protocol) in wanted:
                    raise AddressUnavailable(
                        f"host port {taken.host_port}/{taken.protocol} is already published; choose another"
                    )

    def disconnect(
        self, network_name: str, netns: Path | None = None, container_id: str | None = None, ifname: str = ""
    ) -> bool:
        """Detach an endpoint, found by ``container_id`` (default: the ``netns`` path) and ``ifname``.

        Works when the namespace is gone. Returns ``False`` when nothing was connected.
        """
        network = self.network(network_name)
        key = container_id if container_id is not None else str(netns)
        endpoint = self.find_endpoint(network, key, ifname)
        if endpoint is None:
            return False
        self._teardown(network, endpoint)
        return True

    def _teardown(self, network: Network, endpoint: Endpoint) -> None:
        self._hook.net_revoke_external_connectivity(network=network, endpoint=endpoint)
        self._hook.net_leave(network=network, endpoint=endpoint, sandbox=endpoint.netns)
        self._hook.net_delete_endpoint(network=network, endpoint=endpoint)
        with self.state.transaction() as db:
            self._hook.net_ipam_release_address(network_id=network.id, endpoint_id=endpoint.id)
            db.execute("DELETE FROM net_endpoints WHERE id=?", (endpoint.id,))

    # -- reconciliation ---------------------------------------------------

    def reconcile(self) -> list[str]:
        """Tear down what dead processes and deleted namespaces left; returns one line per thing removed."""
        removed: list[str] = []
        me = os.getpid()
        for row in self.state.query(
            "SELECT e.* FROM net_endpoints e JOIN net_networks n ON n.id = e.network_id WHERE n.driver=?",
            (self.name,),
        ):
            pid = int(row["pid"])
            if row["state"] == "creating":
                stale = pid == me or not pid_alive(pid)
            else:
                stale = not _netns_is(Path(row["netns"]), int(row["netns_inode"]))
            if stale:
                endpoint = _endpoint_from_row(row)
                network_row = self._network_row(endpoint.network_id, ready_only=False)
                assert network_row is not None  # the foreign key guarantees it
                self._teardown(_network_from_row(network_row), endpoint)
                removed.append(f"endpoint {endpoint.id[:12]} ({endpoint.netns}, {endpoint.address})")
        for row in self.state.query("SELECT * FROM net_networks WHERE driver=? AND state='creating'", (self.name,)):
            pid = int(row["pid"])
            if pid == me or not pid_alive(pid):
                network = _network_from_row(row)
                self._drop_network(network)
                removed.append(f"network {network.name} ({network.subnet})")
        networks = [
            _network_from_row(r) for r in self.state.query("SELECT * FROM net_networks WHERE driver=?", (self.name,))
        ]
        known_ids = {n.id for n in networks}
        endpoints = [
            _endpoint_from_row(r)
            for r in self.state.query("SELECT * FROM net_endpoints")
            if r["network_id"] in known_ids
        ]
        removed.extend(self._hook.net_reconcile(networks=networks, endpoints=endpoints))
        return removed

    def collect_garbage(self, network_name: str, keep: Iterable[tuple[str, str]]) -> list[str]:
        """CNI's GC: disconnect every endpoint of the network whose ``(container_id, ifname)`` is not in ``keep``."""
        network = self.network(network_name)
        valid = set(keep)
        removed = []
        for endpoint in self.endpoints(network.id):
            if (endpoint.container_id, endpoint.request_ifname) not in valid:
                self._teardown(network, endpoint)
                removed.append(f"endpoint {endpoint.id[:12]} ({endpoint.container_id}, {endpoint.request_ifname})")
        return removed + self.reconcile()


def open_network_driver(config: Config, state: StateDB) -> NetworkDriver:
    """Load, check and initialise the configured network driver (config key ``network-driver``)."""
    loaded = load_driver(KINDS["network"], config.network_driver, echo_timings=config.debug)
    return NetworkDriver(loaded, Path(config.root) / loaded.name, state)
