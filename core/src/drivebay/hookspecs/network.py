"""Network driver hooks: libnetwork's driver contract plus IPAM and reconciliation.

A network driver connects sandboxes (network namespaces) to networks. It works
in the network namespace of the calling thread, "the host": bridges, host ends
of veth pairs and firewall rules live there; a sandbox is another namespace
named by a path (``/run/netns/NAME``, ``/proc/PID/ns/net``).

Core wraps every driver in :class:`drivebay.facades.network.NetworkDriver`,
which keeps the generic records (networks and endpoints in ``drivebay.db``),
orders the calls, undoes a half-done connect, and at startup tears down
endpoints whose sandbox is gone or whose connecting process died, then asks
the driver to remove whatever else it still holds (``net_reconcile``).

The call order for a connect is ``net_ipam_request_address``,
``net_create_endpoint``, ``net_join``, ``net_program_external_connectivity``;
a disconnect runs ``net_revoke_external_connectivity``, ``net_leave``,
``net_delete_endpoint``, ``net_ipam_release_address``. A network is made by
``net_ipam_request_pool`` then ``net_create_network`` and removed by
``net_delete_network`` then ``net_ipam_release_pool``. Teardown hooks must
succeed when what they remove is already gone (a sandbox deleted behind the
driver's back, a crash half-way).

All hooks are required.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

from drivebay.errors import InvalidConfig
from drivebay.hookspecs import hookspec
from drivebay.state import StateDB

GROUP = "drivebay.netdrivers"
PREFIX = "net_"

PROTOCOLS = ("tcp", "udp")


@dataclass(frozen=True)
class PortMapping:
    """One published port: traffic to ``host_port`` on the host goes to ``container_port``.

    ``host_ip`` limits the rule to one host address (``None``: every local address).
    """

    host_port: int
    container_port: int
    protocol: str = "tcp"
    host_ip: IPv4Address | None = None

    @classmethod
    def parse(cls, text: str) -> PortMapping:
        """Parse Docker's ``HOSTPORT:CONTAINERPORT[/tcp|udp]``."""
        ports, _, protocol = text.partition("/")
        protocol = protocol or "tcp"
        host, sep, container = ports.partition(":")
        try:
            mapping = cls(int(host), int(container), protocol)
        except ValueError as exc:
            raise InvalidConfig(
                f"published port '{text}' is not HOSTPORT:CONTAINERPORT[/tcp|udp]; write it like 8080:80/tcp"
            ) from exc
        if (
            not sep
            or protocol not in PROTOCOLS
            or not all(0 < p < 65536 for p in (mapping.host_port, mapping.container_port))
        ):
            raise InvalidConfig(
                f"published port '{text}' is not HOSTPORT:CONTAINERPORT[/tcp|udp] with ports 1-65535; "
                "write it like 8080:80/tcp"
            )
        return mapping

    def __str__(self) -> str:
        host = f"{self.host_ip}:" if self.host_ip else ""
        return f"{host}{self.host_port}:{self.container_port}/{self.protocol}"

    def to_json(self) -> dict[str, Any]:
        return {
            "host_port": self.host_port,
            "container_port": self.container_port,
            "protocol": self.protocol,
            "host_ip": str(self.host_ip) if self.host_ip else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PortMapping:
        host_ip = data.get("host_ip")
        return cls(
            int(data["host_port"]),
            int(data["container_port"]),
            str(data["protocol"]),
            ipaddress.IPv4Address(host_ip) if host_ip else None,
        )


@dataclass(frozen=True)
class NetworkCapabilities:
    """What a driver declares it supports.

    - ``scope``: ``local`` (one host) or ``global``, as libnetwork's DataScope.
    - ``published_ports``: ``net_program_external_connectivity`` honours ports.
    - ``icc``, ``internal``, ``masquerade``: the matching options work.
    - ``options``: every ``-o`` key the driver accepts at ``network create``.
    """

    scope: str
    published_ports: bool
    icc: bool
    internal: bool
    masquerade: bool
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class IpamPool:
    """The address pool of one network: its subnet and the gateway address in it."""

    subnet: IPv4Network
    gateway: IPv4Address


@dataclass(frozen=True)
class Network:
    """A network as core records it.

    ``options`` are the ``-o`` options given at create; ``driver_info`` is what
    ``net_create_network`` returned (a bridge name, for example).
    """

    id: str
    name: str
    subnet: IPv4Network
    gateway: IPv4Address
    options: Mapping[str, str] = field(default_factory=dict)
    driver_info: Mapping[str, str] = field(default_factory=dict)

    @property
    def internal(self) -> bool:
        return self.options.get("internal", "false").lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class Endpoint:
    """One attachment of a sandbox to a network, as core records it.

    ``container_id`` and ``request_ifname`` identify the attachment to the
    caller (the CLI uses the sandbox path and ``""``; CNI its container ID and
    ``CNI_IFNAME``). ``request_ifname`` ``""`` means the next free ``ethN``.
    ``host_ifname`` and ``mac`` are filled by ``net_create_endpoint``,
    ``ifname`` (the name inside the sandbox) by ``net_join``.
    """

    id: str
    network_id: str
    container_id: str
    netns: Path
    address: IPv4Interface
    request_ifname: str = ""
    ports: tuple[PortMapping, ...] = ()
    host_ifname: str = ""
    mac: str = ""
    ifname: str = ""


@dataclass(frozen=True)
class EndpointInterface:
    """What ``net_create_endpoint`` made: the host-side interface and the sandbox interface's MAC."""

    host_ifname: str
    mac: str


@dataclass(frozen=True)
class JoinInfo:
    """What ``net_join`` configured inside the sandbox.

    ``gateway`` is ``None`` when the sandbox got no default route (internal networks).
    """

    ifname: str
    gateway: IPv4Address | None
    routes: tuple[IPv4Network, ...] = ()


@hookspec(firstresult=True)
def net_capabilities() -> NetworkCapabilities:  # type: ignore[empty-body]
    """Declare what the driver supports.

    Called before ``net_init`` and at any time after; the answer does not
    depend on the host. Returns a :class:`NetworkCapabilities`. Raises nothing.
    """


@hookspec(firstresult=True)
def net_probe(home: Path) -> str | None:
    """Tell whether this host can run the driver.

    Called by ``drivebay drivers`` and ``drivebay info`` before ``net_init``;
    ``home`` is ``<root>/<driver name>`` and may not exist. Changes nothing.
    Returns ``None`` when supported, else the missing thing in a few words
    (``nft not found``). Raises nothing.
    """


@hookspec(firstresult=True)
def net_init(home: Path, state: StateDB, options: Mapping[str, str]) -> None:
    """Prepare the driver to work under ``home`` with its records in ``state``.

    Called once per process before every hook but ``net_capabilities`` and
    ``net_probe``. ``home`` is ``<root>/<driver name>``, created by core;
    ``state`` is the root's ``drivebay.db``, where the driver keeps its own
    tables (IPAM) so that core's transactions include its changes.
    ``options`` are driver-wide options. Raises ``DriverNotSupported`` when
    the host lacks something, ``InvalidConfig`` for a bad option.
    """


@hookspec(firstresult=True)
def net_ipam_request_pool(  # type: ignore[empty-body]
    network_id: str, subnet: IPv4Network | None, gateway: IPv4Address | None
) -> IpamPool:
    """Reserve the address pool of a new network (libnetwork's RequestPool).

    Called by core inside the transaction that records the network, before
    ``net_create_network``. ``subnet`` ``None`` picks a free pool from the
    driver's default pools, skipping pools that overlap another network or a
    route or address of the host; ``gateway`` ``None`` picks the subnet's
    first host address. Returns the :class:`IpamPool`. Raises
    ``NetworkExists`` when ``subnet`` overlaps another network's,
    ``InvalidConfig`` for a gateway outside the subnet or a subnet too small,
    ``AddressUnavailable`` when no default pool is free.
    """


@hookspec(firstresult=True)
def net_ipam_release_pool(network_id: str) -> None:
    """Release the pool of ``network_id`` and every address still allocated in it.

    Called by core after ``net_delete_network``, or to undo a failed create.
    Succeeds when the pool is already gone. Raises nothing else.
    """


@hookspec(firstresult=True)
def net_ipam_request_address(  # type: ignore[empty-body]
    network: Network, endpoint_id: str, address: IPv4Address | None
) -> IPv4Interface:
    """Allocate an address in ``network`` for endpoint ``endpoint_id`` (RequestAddress).

    Called by core inside the transaction that records the endpoint, so the
    allocation and the record commit together. ``address`` ``None`` takes the
    next free address round-robin after the last one handed out; the network,
    broadcast and gateway addresses are never handed out. Returns the address
    with the subnet's prefix length. Raises ``AddressUnavailable`` when
    ``address`` is taken, reserved or outside the subnet, or the pool is
    exhausted.
    """


@hookspec(firstresult=True)
def net_ipam_release_address(network_id: str, endpoint_id: str) -> None:
    """Free the address that endpoint ``endpoint_id`` holds in ``network_id`` (ReleaseAddress).

    Called by core after ``net_delete_endpoint``, in the transaction that
    drops the endpoint's record. Succeeds when nothing is allocated.
    """


@hookspec(firstresult=True)
def net_create_network(network: Network) -> dict[str, str]:  # type: ignore[empty-body]
    """Create the host side of ``network`` (libnetwork's CreateNetwork).

    Called by core after ``net_ipam_request_pool``; ``network.subnet`` and
    ``network.gateway`` come from the pool and ``network.options`` are the
    ``-o`` options, which the driver validates. Returns driver facts shown by
    ``network inspect`` (for a bridge, its name). Raises ``InvalidConfig``
    for an unknown option or bad value, ``NetworkExists`` when the host
    already has what the network would create (a link of that name).
    """


@hookspec(firstresult=True)
def net_delete_network(network: Network) -> None:
    """Remove everything ``net_create_network`` made, including its firewall rules.

    Called by core once no endpoint is left. Succeeds when parts are gone
    already. Raises ``DrivebayError`` subclasses only for real failures.
    """


@hookspec(firstresult=True)
def net_create_endpoint(network: Network, endpoint: Endpoint) -> EndpointInterface:  # type: ignore[empty-body]
    """Create the interfaces of ``endpoint`` on the host (CreateEndpoint).

    Called by core after the address is allocated (``endpoint.address``).
    For a bridge: a veth pair, host end on the bridge and up; the other end
    may already be created inside ``endpoint.netns`` under a temporary name,
    for ``net_join`` to rename and configure. Returns the
    :class:`EndpointInterface`. Raises ``NetworkNotFound`` when the network's
    host side is missing.
    """


@hookspec(firstresult=True)
def net_join(network: Network, endpoint: Endpoint, sandbox: Path) -> JoinInfo:  # type: ignore[empty-body]
    """Put the endpoint's interface into the namespace at ``sandbox`` and configure it (Join).

    Called by core after ``net_create_endpoint``. The interface gets
    ``endpoint.request_ifname`` or the next free ``ethN``, the endpoint's
    address and MTU, and a default route through the gateway unless the
    network is internal; ``lo`` comes up too. Returns the :class:`JoinInfo`.
    Raises ``InvalidConfig`` when ``sandbox`` is not a network namespace or the
    requested name is taken there.
    """


@hookspec(firstresult=True)
def net_leave(network: Network, endpoint: Endpoint, sandbox: Path) -> None:
    """Take the endpoint's interface out of the namespace at ``sandbox`` (Leave).

    Called by core before ``net_delete_endpoint``. Succeeds when the sandbox
    or the interface is gone already.
    """


@hookspec(firstresult=True)
def net_delete_endpoint(network: Network, endpoint: Endpoint) -> None:
    """Remove the host-side interfaces of ``endpoint`` (DeleteEndpoint).

    Called by core after ``net_leave``, and to undo a half-done connect.
    Succeeds when they are gone already.
    """


@hookspec(firstresult=True)
def net_endpoint_oper_info(network: Network, endpoint: Endpoint) -> dict[str, str]:  # type: ignore[empty-body]
    """Return live facts about ``endpoint`` for ``network inspect`` (EndpointOperInfo).

    Called by core on inspect. For a bridge: the host interface, its state
    and the published ports. Raises nothing; missing parts are reported as
    such (``state: missing``).
    """


@hookspec(firstresult=True)
def net_program_external_connectivity(network: Network, endpoint: Endpoint) -> None:
    """Publish ``endpoint.ports`` on the host (ProgramExternalConnectivity).

    Called by core after ``net_join``. Traffic to a published host port,
    including traffic from the host itself, reaches the endpoint's address.
    Does nothing without ports; core has already refused a host port that
    another endpoint publishes. Raises ``InvalidConfig`` when the network is
    internal.
    """


@hookspec(firstresult=True)
def net_revoke_external_connectivity(network: Network, endpoint: Endpoint) -> None:
    """Remove exactly the rules ``net_program_external_connectivity`` added for ``endpoint``.

    Called by core first on disconnect. Succeeds when there are none.
    """


@hookspec(firstresult=True)
def net_reconcile(networks: list[Network], endpoints: list[Endpoint]) -> list[str]:  # type: ignore[empty-body]
    """Remove everything the driver holds that is not for ``networks`` and ``endpoints``.

    Called by core at startup, after it tore down the endpoints whose sandbox
    is gone or whose connecting process died, and by CNI's GC. The lists are
    every network and endpoint core still knows, including ones another live
    process is creating. The driver removes leaked interfaces, firewall rules
    and IPAM records. Returns one line per thing removed. Raises nothing for
    things already gone.
    """


REQUIRED_HOOKS = (
    "net_capabilities",
    "net_probe",
    "net_init",
    "net_ipam_request_pool",
    "net_ipam_release_pool",
    "net_ipam_request_address",
    "net_ipam_release_address",
    "net_create_network",
    "net_delete_network",
    "net_create_endpoint",
    "net_join",
    "net_leave",
    "net_delete_endpoint",
    "net_endpoint_oper_info",
    "net_program_external_connectivity",
    "net_revoke_external_connectivity",
    "net_reconcile",
)
PROBE_HOOK = "net_probe"
