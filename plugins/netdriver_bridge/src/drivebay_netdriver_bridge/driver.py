"""The bridge network driver: Docker's default bridge network on netlink (pyroute2) and nftables.

A network is a Linux bridge holding the gateway address. An endpoint is a veth
pair: the host end on the bridge, the other end created directly inside the
sandbox under a temporary name (moving a link between namespaces costs about
15 ms, creating it there about 1 ms), then renamed to ``ethN`` and configured
by ``net_join``. Host ends are named ``vdb`` + 12 hex digits of the endpoint ID,
so teardown and reconciliation find them without any record.
"""

from __future__ import annotations

import errno
import hashlib
import re
import shutil
from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from drivebay import hookimpl
from drivebay.errors import InvalidConfig, NetworkExists, NetworkNotFound
from drivebay.hookspecs.network import (
    Endpoint,
    EndpointInterface,
    IpamPool,
    JoinInfo,
    Network,
    NetworkCapabilities,
)
from drivebay.lateinit import SetByInit
from drivebay.state import StateDB
from drivebay_netdriver_bridge.firewall import Firewall, endpoint_tag, network_rules, network_tag, port_rules
from drivebay_netdriver_bridge.ipam import Ipam
from drivebay_netdriver_bridge.namespaces import namespace_alive, opened, socket_in

OPT_BRIDGE_NAME = "com.docker.network.bridge.name"
OPT_ICC = "com.docker.network.bridge.enable_icc"
OPT_MASQUERADE = "com.docker.network.bridge.enable_ip_masquerade"
OPT_MTU = "com.docker.network.driver.mtu"
OPT_HOST_BINDING = "com.docker.network.bridge.host_binding_ipv4"
OPT_INTERNAL = "internal"
OPTIONS = (OPT_BRIDGE_NAME, OPT_ICC, OPT_MASQUERADE, OPT_MTU, OPT_HOST_BINDING, OPT_INTERNAL)

DEFAULT_MTU = 1500
IFF_UP = 0x1
HOST_END_PREFIX = "vdb"
HOST_END = re.compile(rf"{HOST_END_PREFIX}[0-9a-f]{{12}}")
IFNAME = re.compile(r"[a-zA-Z0-9_.-]{1,15}")
TRUE, FALSE = ("1", "true", "yes"), ("0", "false", "no")


def _flag(options: Mapping[str, str], key: str, default: bool) -> bool:
    value = options.get(key)
    if value is None:
        return default
    if value.lower() in TRUE:
        return True
    if value.lower() in FALSE:
        return False
    raise InvalidConfig(f"option {key}={value} is not a boolean; use true or false")


def bridge_name(network: Network) -> str:
    """The bridge's name: the ``bridge.name`` option or, as Docker, ``br-`` + 12 digits of the ID."""
    return network.options.get(OPT_BRIDGE_NAME) or f"br-{network.id[:12]}"


def mtu_of(network: Network) -> int:
    raw = network.options.get(OPT_MTU, str(DEFAULT_MTU))
    try:
        mtu = int(raw)
    except ValueError as exc:
        raise InvalidConfig(f"option {OPT_MTU}={raw} is not a number; use 68-65535") from exc
    if not 68 <= mtu <= 65535:
        raise InvalidConfig(f"option {OPT_MTU}={raw} is out of range; use 68-65535")
    return mtu


def host_binding(network: Network) -> IPv4Address | None:
    raw = network.options.get(OPT_HOST_BINDING)
    try:
        address = IPv4Address(raw) if raw else None
    except ValueError as exc:
        raise InvalidConfig(f"option {OPT_HOST_BINDING}={raw} is not an IPv4 address") from exc
    return None if address is None or address.is_unspecified else address


def host_end(endpoint_id: str) -> str:
    return f"{HOST_END_PREFIX}{endpoint_id[:12]}"


def temporary_name(endpoint_id: str) -> str:
    return f"tdb{endpoint_id[:12]}"


def mac_for(address: IPv4Interface) -> str:
    """Docker's MAC scheme: 02:42 and the four bytes of the IPv4 address."""
    return "02:42:" + ":".join(f"{b:02x}" for b in address.ip.packed)


def write_sysctl(key: str, value: str) -> None:
    """Set a ``net.*`` sysctl of the calling thread's namespace (``/proc/sys/net`` is per namespace)."""
    Path("/proc/sys", *key.split(".")).write_text(value)


def _index(ipr: IPRoute, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return int(found[0]) if found else None


def _delete_link(ipr: IPRoute, ifname: str) -> bool:
    index = _index(ipr, ifname)
    if index is None:
        return False
    try:
        ipr.link("del", index=index)
    except NetlinkError as exc:
        if exc.code != errno.ENODEV:  # deleted by the peer's namespace going away meanwhile
            raise
    return True


class BridgeDriver:
    """Linux bridge networks, veth endpoints, host-local style IPAM and nftables NAT."""

    ipam = SetByInit[Ipam]("net_init")

    def __init__(self) -> None:
        self._ipr: IPRoute | None = None
        self._firewall: Firewall | None = None
        self.scope = ""

    @property
    def ipr(self) -> IPRoute:
        # Opened on first use so that the socket lives in the namespace the driver is used in.
        if self._ipr is None:
            self._ipr = IPRoute()
        return self._ipr

    @property
    def firewall(self) -> Firewall:
        if self._firewall is None:
            self._firewall = Firewall()
        return self._firewall

    @hookimpl
    def net_capabilities(self) -> NetworkCapabilities:
        return NetworkCapabilities(
            scope="local", published_ports=True, icc=True, internal=True, masquerade=True, options=OPTIONS
        )

    @hookimpl
    def net_probe(self, home: Path) -> str | None:
        if shutil.which("nft") is None:
            return "nft not found (install nftables)"
        if not Path("/sys/class/net").exists():
            return "no /sys/class/net"
        return None

    @hookimpl
    def net_init(self, home: Path, state: StateDB, options: Mapping[str, str]) -> None:
        if options:
            raise InvalidConfig(f"network driver 'bridge' takes no driver-wide options (got {', '.join(options)})")
        self.ipam = Ipam(state)
        # Several roots may share one namespace; the scope marks this root's nft rules.
        self.scope = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:8]

    # -- IPAM -------------------------------------------------------------

    def _host_networks(self) -> list[IPv4Network]:
        """Subnets of the host's addresses and routes, which a default pool must not overlap."""
        found = []
        for msg in self.ipr.get_addr(family=2):
            found.append(IPv4Network(f"{msg.get('IFA_ADDRESS')}/{msg['prefixlen']}", strict=False))
        for msg in self.ipr.get_routes(family=2, table=254):
            dst = msg.get("RTA_DST")
            if dst and msg["dst_len"]:  # the default route overlaps everything and says nothing
                found.append(IPv4Network(f"{dst}/{msg['dst_len']}", strict=False))
        return found

    @hookimpl
    def net_ipam_request_pool(
        self, network_id: str, subnet: IPv4Network | None, gateway: IPv4Address | None
    ) -> IpamPool:
        return self.ipam.request_pool(network_id, subnet, gateway, self._host_networks() if subnet is None else ())

    @hookimpl
    def net_ipam_release_pool(self, network_id: str) -> None:
        self.ipam.release_pool(network_id)

    @hookimpl
    def net_ipam_request_address(
        self, network: Network, endpoint_id: str, address: IPv4Address | None
    ) -> IPv4Interface:
        return self.ipam.request_address(network.id, endpoint_id, address)

    @hookimpl
    def net_ipam_release_address(self, network_id: str, endpoint_id: str) -> None:
        self.ipam.release_address(network_id, endpoint_id)

    # -- networks ---------------------------------------------------------

    @hookimpl
    def net_create_network(self, network: Network) -> dict[str, str]:
        bridge = bridge_name(network)
        if not IFNAME.fullmatch(bridge):
            raise InvalidConfig(f"bridge name '{bridge}' is not a valid interface name (1-15 of [a-zA-Z0-9_.-])")
        mtu = mtu_of(network)
        icc = _flag(network.options, OPT_ICC, True)
        masquerade = _flag(network.options, OPT_MASQUERADE, True)
        internal = _flag(network.options, OPT_INTERNAL, False)
        host_binding(network)
        if _index(self.ipr, bridge) is not None:
            raise NetworkExists(f"interface '{bridge}' already exists on this host; choose another {OPT_BRIDGE_NAME}")
        self.ipr.link("add", ifname=bridge, kind="bridge", mtu=mtu)
        index = _index(self.ipr, bridge)
        self.ipr.addr("add", index=index, address=str(network.gateway), prefixlen=network.subnet.prefixlen)
        self.ipr.link("set", index=index, state="up")
        write_sysctl(f"net.ipv4.conf.{bridge}.route_localnet", "1")
        if not internal:
            write_sysctl("net.ipv4.ip_forward", "1")
        self.firewall.apply(
            network_rules(
                network_tag(network.id, self.scope),
                bridge,
                network.subnet,
                icc=icc,
                masquerade=masquerade,
                internal=internal,
            )
        )
        return {"bridge": bridge, "mtu": str(mtu)}

    @hookimpl
    def net_delete_network(self, network: Network) -> None:
        bridge = bridge_name(network)
        self.firewall.remove({network_tag(network.id, self.scope)}, bridges=[bridge])
        _delete_link(self.ipr, bridge)

    # -- endpoints --------------------------------------------------------

    @hookimpl
    def net_create_endpoint(self, network: Network, endpoint: Endpoint) -> EndpointInterface:
        bridge = _index(self.ipr, bridge_name(network))
        if bridge is None:
            raise NetworkNotFound(
                f"bridge '{bridge_name(network)}' of network '{network.name}' is missing; "
                f"remove the network and create it again"
            )
        mtu, mac = mtu_of(network), mac_for(endpoint.address)
        with opened(endpoint.netns) as sandbox:
            self.ipr.link(
                "add",
                ifname=host_end(endpoint.id),
                kind="veth",
                mtu=mtu,
                master=bridge,
                state="up",
                peer={"ifname": temporary_name(endpoint.id), "address": mac, "mtu": mtu, "net_ns_fd": sandbox},
            )
        return EndpointInterface(host_ifname=host_end(endpoint.id), mac=mac)

    @hookimpl
    def net_join(self, network: Network, endpoint: Endpoint, sandbox: Path) -> JoinInfo:
        with socket_in(sandbox) as ipr:
            # One dump answers every question about the sandbox; each netlink round trip costs ~0.5 ms.
            links = {str(link.get("IFLA_IFNAME")): link for link in ipr.get_links()}
            ifname = endpoint.request_ifname or next(f"eth{n}" for n in range(len(links) + 1) if f"eth{n}" not in links)
            if ifname in links:
                raise InvalidConfig(f"interface '{ifname}' already exists in {sandbox}; choose another name")
            if not IFNAME.fullmatch(ifname):
                raise InvalidConfig(f"interface name '{ifname}' is invalid (1-15 of [a-zA-Z0-9_.-])")
            veth = links.get(temporary_name(endpoint.id))
            if veth is None:
                raise NetworkNotFound(f"the veth of endpoint {endpoint.id[:12]} vanished from {sandbox}")
            index = int(veth["index"])
            ipr.addr("add", index=index, address=str(endpoint.address.ip), prefixlen=endpoint.address.network.prefixlen)
            ipr.link("set", index=index, ifname=ifname, state="up")
            lo = links["lo"]
            if not int(lo["flags"]) & IFF_UP:
                ipr.link("set", index=int(lo["index"]), state="up")
            if network.internal:
                return JoinInfo(ifname=ifname, gateway=None)
            try:
                ipr.route("add", dst="0.0.0.0/0", gateway=str(network.gateway), oif=index)
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:
                    raise
                # As Docker: the first network that gives a sandbox a default route keeps it.
                return JoinInfo(ifname=ifname, gateway=None)
        return JoinInfo(ifname=ifname, gateway=network.gateway, routes=(IPv4Network("0.0.0.0/0"),))

    @hookimpl
    def net_leave(self, network: Network, endpoint: Endpoint, sandbox: Path) -> None:
        if not endpoint.ifname or not namespace_alive(sandbox):
            return
        with socket_in(sandbox) as ipr:
            index = _index(ipr, endpoint.ifname)
            # Delete only our veth: the sandbox may have reused the name for another interface since.
            if index is not None and ipr.get_links(index)[0].get("IFLA_ADDRESS") == endpoint.mac:
                _delete_link(ipr, endpoint.ifname)

    @hookimpl
    def net_delete_endpoint(self, network: Network, endpoint: Endpoint) -> None:
        _delete_link(self.ipr, host_end(endpoint.id))

    @hookimpl
    def net_endpoint_oper_info(self, network: Network, endpoint: Endpoint) -> dict[str, str]:
        index = _index(self.ipr, host_end(endpoint.id))
        info = {"host_ifname": host_end(endpoint.id), "bridge": bridge_name(network)}
        if index is None:
            info["state"] = "missing"
            return info
        link = self.ipr.get_links(index)[0]
        info["state"] = str(link.get("IFLA_OPERSTATE", "unknown")).lower()
        info["sandbox_alive"] = str(namespace_alive(endpoint.netns)).lower()
        return info

    @hookimpl
    def net_program_external_connectivity(self, network: Network, endpoint: Endpoint) -> None:
        if not endpoint.ports:
            return
        if network.internal:
            raise InvalidConfig(f"network '{network.name}' is internal; ports cannot be published from it")
        self.firewall.apply(
            port_rules(endpoint_tag(endpoint.id, self.scope), endpoint.address, endpoint.ports, host_binding(network))
        )

    @hookimpl
    def net_revoke_external_connectivity(self, network: Network, endpoint: Endpoint) -> None:
        if endpoint.ports:
            self.firewall.remove({endpoint_tag(endpoint.id, self.scope)})

    # -- reconciliation ---------------------------------------------------

    @hookimpl
    def net_reconcile(self, networks: list[Network], endpoints: list[Endpoint]) -> list[str]:
        removed = self.ipam.reconcile({n.id for n in networks}, {e.id for e in endpoints})
        known_ends = {host_end(e.id) for e in endpoints}
        links = self.ipr.get_links()
        names = {str(link.get("IFLA_IFNAME")) for link in links}
        known_bridges = {bridge_name(n) for n in networks}
        ours = {int(link["index"]) for link in links if link.get("IFLA_IFNAME") in known_bridges}
        for link in links:
            # Only veths on this root's bridges: another root in the namespace owns the rest.
            name = str(link.get("IFLA_IFNAME"))
            stale = HOST_END.fullmatch(name) and name not in known_ends and link.get("IFLA_MASTER") in ours
            if stale and _delete_link(self.ipr, name):
                removed.append(f"interface {name}")
        known_tags = {network_tag(n.id, self.scope) for n in networks}
        known_tags |= {endpoint_tag(e.id, self.scope) for e in endpoints}
        rules, bridges = self.firewall.snapshot()
        stale_tags = {r.tag for r in rules if r.tag.endswith(f"@{self.scope}")} - known_tags
        stale_bridges = {b for b in bridges if b not in names}
        doomed = self.firewall.remove(stale_tags, stale_bridges, (rules, bridges))
        removed.extend(f"nft rule {r.family} {r.chain} '{r.tag}'" for r in doomed)
        removed.extend(f"nft bridges element {b}" for b in sorted(stale_bridges))
        return removed
