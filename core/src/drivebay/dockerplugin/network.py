"""``NetworkDriver.*`` and ``IpamDriver.*``: a drivebay network driver served to Docker (libnetwork's remote driver).

Docker's requests and answers, exactly (libnetwork ``drivers/remote/api`` and
``ipams/remote/api``): GetCapabilities answers ``{Scope, ConnectivityScope}``
(``local``); CreateNetwork ``{NetworkID, Options, IPv4Data: [{Pool,
Gateway}]}``; CreateEndpoint ``{NetworkID, EndpointID, Interface: {Address,
MacAddress}}``; Join ``{NetworkID, EndpointID, SandboxKey}`` answers
``{InterfaceName: {SrcName, DstPrefix}, Gateway}``; Leave, DeleteEndpoint,
DeleteNetwork, EndpointOperInfo (``{Value}``),
Program/RevokeExternalConnectivity and DiscoverNew/Delete. IPAM errors are
``{"Error": ...}``.

libnetwork moves the sandbox end of an endpoint into the container and
configures its address itself, so the driver is asked to create the endpoint
with the server's own namespace as the sandbox: its interface then waits in
the host namespace, found by the MAC the driver reports, and Join hands its
name to Docker; ``net_join`` and ``net_leave``, which would configure the
sandbox themselves, are not called. The server keeps networks and endpoints
in memory, so they live as long as it does: restart it only with dockerd.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import socket
import struct
import threading
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

from drivebay.dockerplugin.server import Endpoint as HttpEndpoint
from drivebay.dockerplugin.server import PluginRequest
from drivebay.errors import InvalidConfig, NetworkNotFound, PluginError
from drivebay.facades.network import NetworkDriver
from drivebay.hookspecs.network import Endpoint, Network

GENERIC_OPTIONS = "com.docker.network.generic"
GATEWAY_REQUEST = "com.docker.network.gateway"
ADDRESS_SPACE = "drivebay"


def _text(body: dict[str, Any], key: str, method: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise PluginError(f"{method} needs '{key}'")
    return value


SIOCGIFHWADDR = 0x8927


def _hardware_address(name: str) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        answer = fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR, struct.pack("256s", name.encode()[:15]))
    return ":".join(f"{byte:02x}" for byte in answer[18:24])


def interface_with_mac(mac: str, exclude: str) -> str:
    """The name of the interface of this network namespace with MAC ``mac``, other than ``exclude``.

    Asked of the kernel (ioctl), not of /sys, which shows the namespace /sys was mounted in.
    """
    for _, name in socket.if_nameindex():
        if name != exclude and _hardware_address(name) == mac.lower():
            return name
    raise NetworkNotFound(f"no interface with MAC {mac} in the plugin's namespace; the endpoint was not created")


@dataclass
class _Pool:
    subnet: IPv4Network
    gateway: IPv4Address
    addresses: dict[IPv4Address, str] = field(default_factory=dict)


class NetworkEndpoints:
    """Serves one opened network driver as a libnetwork remote driver and remote IPAM."""

    implements: tuple[str, ...] = ("NetworkDriver", "IpamDriver")

    def __init__(self, driver: NetworkDriver) -> None:
        self.driver = driver
        self._hook = driver.loaded.hook
        self._lock = threading.Lock()
        self._pools: dict[str, _Pool] = {}
        self._networks: dict[str, Network] = {}
        self._endpoints: dict[str, Endpoint] = {}
        self._sandbox_names: dict[str, str] = {}
        self.host_netns = Path(f"/proc/{os.getpid()}/ns/net")

    def endpoints(self) -> dict[str, HttpEndpoint]:
        return {
            "NetworkDriver.GetCapabilities": self.capabilities,
            "NetworkDriver.CreateNetwork": self.create_network,
            "NetworkDriver.DeleteNetwork": self.delete_network,
            "NetworkDriver.CreateEndpoint": self.create_endpoint,
            "NetworkDriver.EndpointOperInfo": self.oper_info,
            "NetworkDriver.DeleteEndpoint": self.delete_endpoint,
            "NetworkDriver.Join": self.join,
            "NetworkDriver.Leave": self.leave,
            "NetworkDriver.ProgramExternalConnectivity": self.program,
            "NetworkDriver.RevokeExternalConnectivity": self.revoke,
            "NetworkDriver.DiscoverNew": self.discover,
            "NetworkDriver.DiscoverDelete": self.discover,
            "IpamDriver.GetCapabilities": self.ipam_capabilities,
            "IpamDriver.GetDefaultAddressSpaces": self.address_spaces,
            "IpamDriver.RequestPool": self.request_pool,
            "IpamDriver.ReleasePool": self.release_pool,
            "IpamDriver.RequestAddress": self.request_address,
            "IpamDriver.ReleaseAddress": self.release_address,
        }

    def close(self) -> None:
        """Nothing runs in the background; what Docker did not delete stays for its next start."""

    # -- IPAM ------------------------------------------------------------------------

    def ipam_capabilities(self, request: PluginRequest) -> dict[str, Any]:
        return {"RequiresMACAddress": False, "RequiresRequestReplay": False}

    def address_spaces(self, request: PluginRequest) -> dict[str, Any]:
        return {"LocalDefaultAddressSpace": ADDRESS_SPACE, "GlobalDefaultAddressSpace": ADDRESS_SPACE}

    def _pool(self, pool_id: str) -> _Pool:
        pool = self._pools.get(pool_id)
        if pool is None:
            raise NetworkNotFound(f"IPAM pool '{pool_id}' does not exist in this plugin")
        return pool

    def request_pool(self, request: PluginRequest) -> dict[str, Any]:
        body = request.json()
        if body.get("V6"):
            raise InvalidConfig(
                f"network driver '{self.driver.name}' has no IPv6 pools; create the network without --ipv6"
            )
        pool_id = secrets.token_hex(16)
        subnet = IPv4Network(body["Pool"]) if body.get("Pool") else None
        with self.driver.state.transaction():
            pool = self._hook.net_ipam_request_pool(network_id=pool_id, subnet=subnet, gateway=None)
        with self._lock:
            self._pools[pool_id] = _Pool(pool.subnet, pool.gateway)
        return {
            "PoolID": pool_id,
            "Pool": str(pool.subnet),
            "Data": {GATEWAY_REQUEST: f"{pool.gateway}/{pool.subnet.prefixlen}"},
        }

    def release_pool(self, request: PluginRequest) -> dict[str, Any]:
        pool_id = _text(request.json(), "PoolID", "IpamDriver.ReleasePool")
        with self.driver.state.transaction():
            self._hook.net_ipam_release_pool(network_id=pool_id)
        with self._lock:
            self._pools.pop(pool_id, None)
        return {}

    def request_address(self, request: PluginRequest) -> dict[str, Any]:
        body = request.json()
        pool_id = _text(body, "PoolID", "IpamDriver.RequestAddress")
        pool = self._pool(pool_id)
        options = body.get("Options") or {}
        if options.get("RequestAddressType") == GATEWAY_REQUEST:
            return {"Address": f"{pool.gateway}/{pool.subnet.prefixlen}"}
        wanted = IPv4Address(body["Address"]) if body.get("Address") else None
        key = secrets.token_hex(16)
        network = Network(pool_id, pool_id, pool.subnet, pool.gateway)
        with self.driver.state.transaction():
            address = self._hook.net_ipam_request_address(network=network, endpoint_id=key, address=wanted)
        with self._lock:
            pool.addresses[address.ip] = key
        return {"Address": str(address)}

    def release_address(self, request: PluginRequest) -> dict[str, Any]:
        body = request.json()
        pool_id = _text(body, "PoolID", "IpamDriver.ReleaseAddress")
        pool = self._pool(pool_id)
        address = IPv4Address(_text(body, "Address", "IpamDriver.ReleaseAddress").split("/")[0])
        with self._lock:
            key = pool.addresses.pop(address, None)
        if key is not None:
            with self.driver.state.transaction():
                self._hook.net_ipam_release_address(network_id=pool_id, endpoint_id=key)
        return {}

    # -- networks and endpoints ------------------------------------------------------

    def capabilities(self, request: PluginRequest) -> dict[str, Any]:
        return {"Scope": "local", "ConnectivityScope": "local"}

    def discover(self, request: PluginRequest) -> dict[str, Any]:
        return {}

    def _network(self, body: dict[str, Any], method: str) -> Network:
        network_id = _text(body, "NetworkID", method)
        network = self._networks.get(network_id)
        if network is None:
            raise NetworkNotFound(f"network '{network_id[:12]}' is not known to this plugin; create it again")
        return network

    def _endpoint(self, body: dict[str, Any], method: str) -> tuple[Network, Endpoint]:
        network = self._network(body, method)
        endpoint_id = _text(body, "EndpointID", method)
        endpoint = self._endpoints.get(endpoint_id)
        if endpoint is None:
            raise NetworkNotFound(f"endpoint '{endpoint_id[:12]}' is not known to this plugin")
        return network, endpoint

    def create_network(self, request: PluginRequest) -> dict[str, Any]:
        body = request.json()
        network_id = _text(body, "NetworkID", "NetworkDriver.CreateNetwork")
        ipv4 = body.get("IPv4Data") or []
        if not ipv4:
            raise InvalidConfig("NetworkDriver.CreateNetwork: the network has no IPv4 pool")
        subnet = IPv4Network(ipv4[0]["Pool"])
        gateway = IPv4Interface(ipv4[0]["Gateway"]).ip if ipv4[0].get("Gateway") else next(subnet.hosts())
        generic = (body.get("Options") or {}).get(GENERIC_OPTIONS) or {}
        options = {str(k): str(v) for k, v in generic.items()}
        unknown = sorted(set(options) - set(self.driver.capabilities.options))
        if unknown:
            raise InvalidConfig(
                f"network driver '{self.driver.name}' has no option {', '.join(map(repr, unknown))}; "
                f"accepted: {', '.join(self.driver.capabilities.options)}"
            )
        network = Network(network_id, network_id[:12], subnet, gateway, options)
        info = self._hook.net_create_network(network=network)
        with self._lock:
            self._networks[network_id] = Network(network_id, network_id[:12], subnet, gateway, options, dict(info))
        return {}

    def delete_network(self, request: PluginRequest) -> dict[str, Any]:
        network = self._network(request.json(), "NetworkDriver.DeleteNetwork")
        self._hook.net_delete_network(network=network)
        with self._lock:
            del self._networks[network.id]
        return {}

    def create_endpoint(self, request: PluginRequest) -> dict[str, Any]:
        body = request.json()
        network = self._network(body, "NetworkDriver.CreateEndpoint")
        endpoint_id = _text(body, "EndpointID", "NetworkDriver.CreateEndpoint")
        interface = body.get("Interface") or {}
        if not interface.get("Address"):
            raise InvalidConfig("NetworkDriver.CreateEndpoint: the endpoint has no IPv4 address from IPAM")
        endpoint = Endpoint(endpoint_id, network.id, endpoint_id, self.host_netns, IPv4Interface(interface["Address"]))
        made = self._hook.net_create_endpoint(network=network, endpoint=endpoint)
        endpoint = Endpoint(
            endpoint_id, network.id, endpoint_id, self.host_netns, endpoint.address,
            host_ifname=made.host_ifname, mac=made.mac,
        )
        sandbox_name = interface_with_mac(made.mac, made.host_ifname)
        with self._lock:
            self._endpoints[endpoint_id] = endpoint
            self._sandbox_names[endpoint_id] = sandbox_name
        # libnetwork refuses an answer that sets what the request already set (the address); the MAC stays ours.
        return {}

    def oper_info(self, request: PluginRequest) -> dict[str, Any]:
        network, endpoint = self._endpoint(request.json(), "NetworkDriver.EndpointOperInfo")
        return {"Value": dict(self._hook.net_endpoint_oper_info(network=network, endpoint=endpoint))}

    def delete_endpoint(self, request: PluginRequest) -> dict[str, Any]:
        network, endpoint = self._endpoint(request.json(), "NetworkDriver.DeleteEndpoint")
        self._hook.net_delete_endpoint(network=network, endpoint=endpoint)
        with self._lock:
            del self._endpoints[endpoint.id]
            self._sandbox_names.pop(endpoint.id, None)
        return {}

    def join(self, request: PluginRequest) -> dict[str, Any]:
        network, endpoint = self._endpoint(request.json(), "NetworkDriver.Join")
        return {
            "InterfaceName": {"SrcName": self._sandbox_names[endpoint.id], "DstPrefix": "eth"},
            "Gateway": "" if network.internal else str(network.gateway),
            "StaticRoutes": [],
            "DisableGatewayService": False,
        }

    def leave(self, request: PluginRequest) -> dict[str, Any]:
        self._endpoint(request.json(), "NetworkDriver.Leave")
        return {}

    def program(self, request: PluginRequest) -> dict[str, Any]:
        network, endpoint = self._endpoint(request.json(), "NetworkDriver.ProgramExternalConnectivity")
        self._hook.net_program_external_connectivity(network=network, endpoint=endpoint)
        return {}

    def revoke(self, request: PluginRequest) -> dict[str, Any]:
        network, endpoint = self._endpoint(request.json(), "NetworkDriver.RevokeExternalConnectivity")
        self._hook.net_revoke_external_connectivity(network=network, endpoint=endpoint)
        return {}
