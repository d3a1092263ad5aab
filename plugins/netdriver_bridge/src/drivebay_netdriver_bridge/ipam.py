"""Persistent, transactional IPAM, round-robin like CNI's host-local.

Pools and allocations live in the root's ``drivebay.db``. Every change runs in
:meth:`StateDB.transaction`, which joins core's transaction when core holds
one, so an allocation commits together with the endpoint record or not at all.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from drivebay.errors import AddressUnavailable, InvalidConfig, NetworkExists
from drivebay.hookspecs.network import IpamPool
from drivebay.state import StateDB

SCHEMA = """
CREATE TABLE IF NOT EXISTS bridge_ipam_pools (
    network_id TEXT PRIMARY KEY,
    subnet TEXT NOT NULL,
    gateway TEXT NOT NULL,
    last_address TEXT
);
CREATE TABLE IF NOT EXISTS bridge_ipam_addresses (
    network_id TEXT NOT NULL REFERENCES bridge_ipam_pools (network_id) ON DELETE CASCADE,
    address TEXT NOT NULL,
    endpoint_id TEXT NOT NULL UNIQUE,
    PRIMARY KEY (network_id, address)
)
"""

DEFAULT_POOLS: tuple[IPv4Network, ...] = (
    *(IPv4Network(f"172.{octet}.0.0/16") for octet in range(17, 32)),
    *IPv4Network("192.168.0.0/16").subnets(new_prefix=20),
)
"""Docker's default address pools: 172.17-31.0.0/16, then 192.168.0.0/16 cut into /20s."""

SMALLEST_PREFIX = 30
"""A /30 still has two hosts: the gateway and one endpoint."""


class Ipam:
    """Address pools and allocations of the bridge driver's networks."""

    def __init__(self, state: StateDB) -> None:
        self.state = state
        state.ensure_schema(SCHEMA)

    def pools(self) -> dict[str, IpamPool]:
        return {
            str(r["network_id"]): IpamPool(IPv4Network(r["subnet"]), IPv4Address(r["gateway"]))
            for r in self.state.query("SELECT * FROM bridge_ipam_pools")
        }

    def request_pool(
        self,
        network_id: str,
        subnet: IPv4Network | None,
        gateway: IPv4Address | None,
        host_networks: Iterable[IPv4Network],
    ) -> IpamPool:
        """Reserve ``subnet`` (or the first free default pool) for ``network_id``."""
        with self.state.transaction() as db:
            taken = {nid: pool.subnet for nid, pool in self.pools().items()}
            if subnet is None:
                subnet = self._free_default_pool([*taken.values(), *host_networks])
            else:
                for other_id, other in taken.items():
                    if other.overlaps(subnet):
                        raise NetworkExists(
                            f"subnet {subnet} overlaps {other} of network {other_id[:12]}; choose a free subnet"
                        )
            if subnet.prefixlen > SMALLEST_PREFIX:
                raise InvalidConfig(f"subnet {subnet} is too small; use a /{SMALLEST_PREFIX} or larger")
            if gateway is None:
                gateway = subnet.network_address + 1
            elif gateway not in subnet or gateway in (subnet.network_address, subnet.broadcast_address):
                raise InvalidConfig(f"gateway {gateway} is not a host address of subnet {subnet}; choose one inside it")
            db.execute("INSERT INTO bridge_ipam_pools VALUES (?, ?, ?, NULL)", (network_id, str(subnet), str(gateway)))
        return IpamPool(subnet, gateway)

    @staticmethod
    def _free_default_pool(taken: Collection[IPv4Network]) -> IPv4Network:
        for pool in DEFAULT_POOLS:
            if not any(pool.overlaps(other) for other in taken):
                return pool
        raise AddressUnavailable(
            "every default address pool (172.17-31.0.0/16, 192.168.0.0/20 ...) overlaps a network, "
            "route or address; pass --subnet"
        )

    def release_pool(self, network_id: str) -> None:
        with self.state.transaction() as db:
            db.execute("DELETE FROM bridge_ipam_addresses WHERE network_id=?", (network_id,))
            db.execute("DELETE FROM bridge_ipam_pools WHERE network_id=?", (network_id,))

    def request_address(self, network_id: str, endpoint_id: str, address: IPv4Address | None) -> IPv4Interface:
        """Allocate ``address`` or the next free one after the last allocated, wrapping around."""
        with self.state.transaction() as db:
            rows = self.state.query("SELECT * FROM bridge_ipam_pools WHERE network_id=?", (network_id,))
            if not rows:
                raise AddressUnavailable(f"network {network_id[:12]} has no address pool; recreate the network")
            subnet, gateway = IPv4Network(rows[0]["subnet"]), IPv4Address(rows[0]["gateway"])
            reserved = {subnet.network_address, subnet.broadcast_address, gateway}
            taken = {
                IPv4Address(r["address"])
                for r in self.state.query("SELECT address FROM bridge_ipam_addresses WHERE network_id=?", (network_id,))
            }
            if address is not None:
                if address not in subnet or address in reserved:
                    raise AddressUnavailable(
                        f"address {address} is not an assignable address of {subnet} (gateway {gateway}); "
                        "choose another or omit --ip"
                    )
                if address in taken:
                    raise AddressUnavailable(f"address {address} is already in use in {subnet}; choose another")
            else:
                last = rows[0]["last_address"]
                address = self._next_free(subnet, reserved | taken, IPv4Address(last) if last else gateway)
            db.execute("INSERT INTO bridge_ipam_addresses VALUES (?, ?, ?)", (network_id, str(address), endpoint_id))
            db.execute("UPDATE bridge_ipam_pools SET last_address=? WHERE network_id=?", (str(address), network_id))
        return IPv4Interface(f"{address}/{subnet.prefixlen}")

    @staticmethod
    def _next_free(subnet: IPv4Network, unavailable: set[IPv4Address], last: IPv4Address) -> IPv4Address:
        first, size = int(subnet.network_address), subnet.num_addresses
        start = int(last) - first
        for step in range(1, size + 1):
            candidate = IPv4Address(first + (start + step) % size)
            if candidate not in unavailable:
                return candidate
        raise AddressUnavailable(
            f"no free address left in {subnet}; disconnect endpoints or create a network with a larger subnet"
        )

    def release_address(self, network_id: str, endpoint_id: str) -> None:
        with self.state.transaction() as db:
            db.execute(
                "DELETE FROM bridge_ipam_addresses WHERE network_id=? AND endpoint_id=?", (network_id, endpoint_id)
            )

    def allocations(self) -> list[tuple[str, str, str]]:
        """Every ``(network_id, address, endpoint_id)``."""
        return [
            (str(r["network_id"]), str(r["address"]), str(r["endpoint_id"]))
            for r in self.state.query("SELECT * FROM bridge_ipam_addresses ORDER BY network_id, address")
        ]

    def reconcile(self, network_ids: Collection[str], endpoint_ids: Collection[str]) -> list[str]:
        """Drop pools and allocations that no known network or endpoint owns."""
        removed = []
        with self.state.transaction() as db:
            for network_id, address, endpoint_id in self.allocations():
                if endpoint_id not in endpoint_ids or network_id not in network_ids:
                    db.execute("DELETE FROM bridge_ipam_addresses WHERE endpoint_id=?", (endpoint_id,))
                    removed.append(f"address {address} of endpoint {endpoint_id[:12]}")
            for network_id, pool in self.pools().items():
                if network_id not in network_ids:
                    self.release_pool(network_id)
                    removed.append(f"pool {pool.subnet} of network {network_id[:12]}")
        return removed
