"""Drivers whose hooks call a Docker plugin: what ``docker-plugin:NAME`` in config loads.

Each class implements its kind's hooks by HTTP calls to plugin ``NAME``
through :class:`~drivebay.dockerplugin.client.PluginClient`, so core's
facades (registry, refcounts, checks) work over any Docker plugin as over an
installed driver. The loader builds them (:func:`remote_driver`); they are
never entry points. Probes find and activate the plugin without retrying
and report why they could not; every other hook activates with dockerd's
30-second retry first.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlencode

from drivebay.dockerplugin.client import PluginClient
from drivebay.dockerplugin.logentry import PartialMetadata, WireLogEntry, read_frame, write_frame
from drivebay.errors import DriverNotFound, LogNotFound, NetworkNotFound, PluginError, UsageError
from drivebay.hookspecs import hookimpl
from drivebay.hookspecs.graph import Change, ChangeKind, GraphCapabilities
from drivebay.hookspecs.log import LogCapabilities, LogEntry, LogInfo, LogMessage, LogStats, ReadConfig
from drivebay.hookspecs.network import (
    Endpoint,
    EndpointInterface,
    IpamPool,
    JoinInfo,
    Network,
    NetworkCapabilities,
)
from drivebay.hookspecs.volume import Volume, VolumeCapabilities
from drivebay.state import StateDB
from drivebay.timestamps import format_timestamp, parse_timestamp

DEFAULT_MAX_DEPTH = 128
"""The depth assumed for a graph plugin that does not say (moby overlay2's limit)."""

VOLUME_TIMEOUTS = {
    **dict.fromkeys(("VolumeDriver.Create", "VolumeDriver.Remove", "VolumeDriver.Mount"), 120.0),
    **dict.fromkeys(
        ("VolumeDriver.Unmount", "VolumeDriver.Path", "VolumeDriver.Get", "VolumeDriver.List",
         "VolumeDriver.Capabilities"),
        60.0,
    ),
}
"""Docker's volume proxy time limits (``longTimeout`` 2 min, ``shortTimeout`` 1 min)."""

KINDS_FROM_NUMBERS = {0: ChangeKind.MODIFY, 1: ChangeKind.ADD, 2: ChangeKind.DELETE}


class _Remote:
    interface = ""

    def __init__(self, plugin: str, client: PluginClient | None = None) -> None:
        self.plugin = plugin
        self.client = client or PluginClient(plugin)

    def _probe(self) -> str | None:
        """``None`` when the plugin is there, activates and implements the interface; else why not."""
        probe = PluginClient(self.plugin, retry_seconds=0)
        try:
            probe.require(self.interface)
        except PluginError as exc:
            return str(exc)
        finally:
            probe.close()
        return None

    def _call(self, method: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        self.client.require(self.interface)
        return self.client.call(f"{self.interface}.{method}", args)


# -- graph ----------------------------------------------------------------------


class RemoteGraphDriver(_Remote):
    """A graph driver that is a Docker ``GraphDriver`` plugin."""

    interface = "GraphDriver"

    def __init__(self, plugin: str, client: PluginClient | None = None) -> None:
        super().__init__(plugin, client)
        self._lock = threading.Lock()
        self._held: dict[str, Path] = {}

    @hookimpl
    def graph_capabilities(self) -> GraphCapabilities:
        answer = self._call("Capabilities")
        full = answer.get("DrivebayCapabilities")
        if isinstance(full, dict):
            return GraphCapabilities(
                native_diff=bool(full["native_diff"]),
                quota=bool(full["quota"]),
                max_depth=int(full["max_depth"]),
                quota_filesystems=tuple(full.get("quota_filesystems") or ()),
                required_filesystem=full.get("required_filesystem"),
                remove_while_mounted=bool(full.get("remove_while_mounted")),
                xattrs=bool(full.get("xattrs", True)),
                device_nodes=bool(full.get("device_nodes", True)),
                hardlinks=bool(full.get("hardlinks", True)),
                extra={str(k): str(v) for k, v in (full.get("extra") or {}).items()},
            )
        return GraphCapabilities(native_diff=True, quota=False, max_depth=DEFAULT_MAX_DEPTH)

    @hookimpl
    def graph_probe(self, home: Path) -> str | None:
        return self._probe()

    @hookimpl
    def graph_init(self, home: Path, options: Mapping[str, str]) -> None:
        self._call("Init", {"Home": str(home), "Opts": [f"{k}={v}" for k, v in options.items()],
                            "UIDMaps": None, "GIDMaps": None})

    def _create(self, method: str, layer_id: str, parent: str | None, storage_opts: Mapping[str, str]) -> None:
        self._call(method, {"ID": layer_id, "Parent": parent or "", "MountLabel": "", "StorageOpt": dict(storage_opts)})

    @hookimpl
    def graph_create(self, layer_id: str, parent: str | None, storage_opts: Mapping[str, str]) -> None:
        self._create("Create", layer_id, parent, storage_opts)

    @hookimpl
    def graph_create_rw(self, layer_id: str, parent: str | None, storage_opts: Mapping[str, str]) -> None:
        self._create("CreateReadWrite", layer_id, parent, storage_opts)

    @hookimpl
    def graph_remove(self, layer_id: str) -> None:
        self._call("Remove", {"ID": layer_id})

    @hookimpl
    def graph_get(self, layer_id: str) -> Path:
        # drivebay's get is idempotent and core counts references; Docker's Get and Put come in counted
        # pairs. So this process holds at most one of the plugin's references per layer.
        with self._lock:
            held = self._held.get(layer_id)
        if held is not None:
            return held
        path = Path(str(self._call("Get", {"ID": layer_id, "MountLabel": ""}).get("Dir") or ""))
        with self._lock:
            self._held[layer_id] = path
        return path

    @hookimpl
    def graph_put(self, layer_id: str) -> None:
        self._call("Put", {"ID": layer_id})
        with self._lock:
            self._held.pop(layer_id, None)

    @hookimpl
    def graph_exists(self, layer_id: str) -> bool:
        return bool(self._call("Exists", {"ID": layer_id}).get("Exists"))

    @hookimpl
    def graph_status(self) -> list[tuple[str, str]]:
        return [(str(k), str(v)) for k, v in self._call("Status").get("Status") or []]

    @hookimpl
    def graph_metadata(self, layer_id: str) -> dict[str, str]:
        return {str(k): str(v) for k, v in (self._call("GetMetadata", {"ID": layer_id}).get("Metadata") or {}).items()}

    @hookimpl
    def graph_cleanup(self) -> None:
        self._call("Cleanup")
        with self._lock:
            self._held.clear()

    @hookimpl
    def graph_diff(self, layer_id: str, parent: str | None, out: BinaryIO) -> bool | None:
        self.client.require(self.interface)
        self.client.copy_stream("GraphDriver.Diff", {"ID": layer_id, "Parent": parent or ""}, out)
        return True

    @hookimpl
    def graph_changes(self, layer_id: str, parent: str | None) -> list[Change] | None:
        answer = self._call("Changes", {"ID": layer_id, "Parent": parent or ""})
        return sorted(Change(str(c["Path"]), KINDS_FROM_NUMBERS[int(c["Kind"])]) for c in answer.get("Changes") or [])

    @hookimpl
    def graph_apply_diff(self, layer_id: str, parent: str | None, tar: BinaryIO) -> int | None:
        self.client.require(self.interface)
        query = urlencode({"id": layer_id, "parent": parent or ""})
        return int(self.client.send_file(f"GraphDriver.ApplyDiff?{query}", tar).get("Size") or 0)

    @hookimpl
    def graph_diff_size(self, layer_id: str, parent: str | None) -> int | None:
        return int(self._call("DiffSize", {"ID": layer_id, "Parent": parent or ""}).get("Size") or 0)


# -- volume -----------------------------------------------------------------------


def _created_ns(text: Any) -> int:
    if not text:
        return 0
    try:
        return parse_timestamp(str(text))
    except UsageError:
        return 0


class RemoteVolumeDriver(_Remote):
    """A volume driver that is a Docker ``VolumeDriver`` plugin."""

    interface = "VolumeDriver"

    def __init__(self, plugin: str, client: PluginClient | None = None) -> None:
        super().__init__(plugin, client or PluginClient(plugin, timeouts=VOLUME_TIMEOUTS))

    @staticmethod
    def _volume(data: Mapping[str, Any]) -> Volume:
        return Volume(
            name=str(data.get("Name") or ""),
            mountpoint=Path(str(data.get("Mountpoint") or "")),
            created_ns=_created_ns(data.get("CreatedAt")),
            status={str(k): str(v) for k, v in (data.get("Status") or {}).items()},
        )

    @hookimpl
    def volume_capabilities(self) -> VolumeCapabilities:
        caps = self._call("Capabilities").get("Capabilities") or {}
        return VolumeCapabilities(scope=str(caps.get("Scope") or "local"))

    @hookimpl
    def volume_probe(self, root: Path) -> str | None:
        return self._probe()

    @hookimpl
    def volume_init(self, root: Path) -> None:
        self.client.require(self.interface)

    @hookimpl
    def volume_create(self, name: str, options: Mapping[str, str]) -> None:
        self._call("Create", {"Name": name, "Opts": dict(options)})

    @hookimpl
    def volume_remove(self, name: str) -> None:
        self._call("Remove", {"Name": name})

    @hookimpl
    def volume_mount(self, name: str, caller_id: str) -> Path:
        return Path(str(self._call("Mount", {"Name": name, "ID": caller_id}).get("Mountpoint") or ""))

    @hookimpl
    def volume_unmount(self, name: str, caller_id: str) -> None:
        self._call("Unmount", {"Name": name, "ID": caller_id})

    @hookimpl
    def volume_path(self, name: str) -> Path:
        return Path(str(self._call("Path", {"Name": name}).get("Mountpoint") or ""))

    @hookimpl
    def volume_get(self, name: str) -> Volume:
        return self._volume(self._call("Get", {"Name": name}).get("Volume") or {"Name": name})

    @hookimpl
    def volume_list(self) -> list[Volume]:
        volumes = [self._volume(v) for v in self._call("List").get("Volumes") or []]
        return sorted(volumes, key=lambda v: v.name)


# -- log ------------------------------------------------------------------------


def info_json(info: LogInfo) -> dict[str, Any]:
    """Docker's ``logger.Info`` for ``info``."""
    return {
        "Config": dict(info.options),
        "ContainerID": info.container_id,
        "ContainerName": f"/{info.container_name}",
        "ContainerEntrypoint": "",
        "ContainerArgs": [],
        "ContainerImageID": info.image_id,
        "ContainerImageName": info.image_name,
        "ContainerCreated": "0001-01-01T00:00:00Z",
        "ContainerEnv": [f"{k}={v}" for k, v in info.env.items()],
        "ContainerLabels": dict(info.labels),
        "LogPath": "",
        "DaemonName": info.daemon_name,
    }


def _go_time(timestamp_ns: int | None) -> str:
    """Go's JSON ``time.Time``; its zero value means no bound."""
    return "0001-01-01T00:00:00Z" if timestamp_ns is None else format_timestamp(timestamp_ns)


class _OpenLog:
    """One log being written: the FIFO, its write end, and the split-line state."""

    def __init__(self, fifo: Path, fd: int) -> None:
        self.fifo = fifo
        self.stream = os.fdopen(fd, "wb", buffering=1 << 16)
        self.written = 0
        self.partial_id: dict[str, tuple[str, int]] = {}


class RemoteLogDriver(_Remote):
    """A log driver that is a Docker ``LogDriver`` plugin: messages go through a FIFO, as from dockerd."""

    interface = "LogDriver"

    def __init__(self, plugin: str, client: PluginClient | None = None) -> None:
        super().__init__(plugin, client)
        self._logs: dict[str, _OpenLog] = {}
        self._lock = threading.Lock()

    @hookimpl
    def log_capabilities(self) -> LogCapabilities:
        caps = self._call("Capabilities").get("Cap") or {}
        return LogCapabilities(read_logs=bool(caps.get("ReadLogs")))

    @hookimpl
    def log_probe(self, root: Path) -> str | None:
        return self._probe()

    @hookimpl
    def log_validate_options(self, options: Mapping[str, str]) -> None:
        """The plugin validates its options at StartLogging, as with dockerd."""

    @hookimpl
    def log_start(self, info: LogInfo) -> None:
        directory = Path(tempfile.mkdtemp(prefix="drivebay-log-"))
        fifo = directory / secrets.token_hex(16)
        os.mkfifo(fifo, 0o600)
        # Read-write never blocks on a FIFO, whenever the plugin opens its end; only the plugin reads.
        fd = os.open(fifo, os.O_RDWR)
        try:
            self._call("StartLogging", {"File": str(fifo), "Info": info_json(info)})
        except BaseException:
            os.close(fd)
            fifo.unlink()
            directory.rmdir()
            raise
        with self._lock:
            self._logs[info.container_id] = _OpenLog(fifo, fd)

    def _open(self, container_id: str) -> _OpenLog:
        with self._lock:
            log = self._logs.get(container_id)
        if log is None:
            raise LogNotFound(f"the log of '{container_id}' was not started; start it first")
        return log

    @hookimpl
    def log_write(self, container_id: str, messages: Sequence[LogMessage]) -> None:
        log = self._open(container_id)
        for message in messages:
            meta = None
            previous = log.partial_id.pop(message.source, None)
            if message.partial or previous is not None:
                ident, ordinal = previous or (secrets.token_hex(16), 0)
                meta = PartialMetadata(last=not message.partial, id=ident, ordinal=ordinal + 1)
                if message.partial:
                    log.partial_id[message.source] = (ident, ordinal + 1)
            write_frame(log.stream, WireLogEntry(message.source, message.timestamp_ns, message.line,
                                                 message.partial, meta))
            log.written += 1

    @hookimpl
    def log_close(self, container_id: str) -> LogStats:
        log = self._open(container_id)
        with self._lock:
            del self._logs[container_id]
        try:
            log.stream.close()
            # Unlike dockerd, close first and ask the plugin to drain: when this returns, the log is stored.
            # "Drain" is drivebay's; other plugins ignore it.
            self._call("StopLogging", {"File": str(log.fifo), "Drain": True})
        finally:
            log.fifo.unlink()
            log.fifo.parent.rmdir()
        return LogStats(written=log.written)

    @hookimpl
    def log_read(self, info: LogInfo, config: ReadConfig) -> Iterator[LogEntry] | None:
        self.client.require(self.interface)
        args = {
            "Info": info_json(info),
            "Config": {
                "Since": _go_time(config.since_ns),
                "Until": _go_time(config.until_ns),
                "Tail": -1 if config.tail is None else config.tail,
                "Follow": config.follow,
            },
        }
        return self._entries(args)

    def _entries(self, args: dict[str, Any]) -> Iterator[LogEntry]:
        with self.client.stream("LogDriver.ReadLogs", args) as body:
            while (entry := read_frame(body)) is not None:
                line = entry.line[:-1] if entry.line.endswith(b"\n") and not entry.continues else entry.line
                yield LogEntry(line.decode("utf-8", "replace"), entry.source, entry.time_nano, partial=entry.continues)


# -- network --------------------------------------------------------------------------

NETWORK_SCHEMA = """
CREATE TABLE IF NOT EXISTS dockerplugin_pools (
    plugin TEXT NOT NULL,
    network_id TEXT NOT NULL,
    pool_id TEXT NOT NULL,
    gateway TEXT NOT NULL,
    PRIMARY KEY (plugin, network_id)
);
CREATE TABLE IF NOT EXISTS dockerplugin_addresses (
    plugin TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    network_id TEXT NOT NULL,
    address TEXT NOT NULL,
    PRIMARY KEY (plugin, endpoint_id)
)
"""

GATEWAY_REQUEST = {"RequestAddressType": "com.docker.network.gateway"}


def _run(command: list[str], what: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PluginError(f"{what} failed: {' '.join(command)}: {result.stderr.strip()}")
    return result.stdout


class RemoteNetworkDriver(_Remote):
    """A network driver that is a Docker ``NetworkDriver`` plugin with its ``IpamDriver``.

    What libnetwork does around a remote driver is done here: the plugin's
    IPAM pool and addresses are kept per network in drivebay.db, and at join
    the interface the plugin names is moved into the sandbox, renamed, given
    its address and the default route (with ``ip``, from iproute2).
    """

    interface = "NetworkDriver"

    def __init__(self, plugin: str, client: PluginClient | None = None) -> None:
        super().__init__(plugin, client)
        self._state: StateDB | None = None
        self._address_space = ""

    @property
    def state(self) -> StateDB:
        if self._state is None:
            raise PluginError(f"network driver docker-plugin:{self.plugin} is used before net_init")
        return self._state

    def _ipam(self, method: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.client.call(f"IpamDriver.{method}", args)

    def _pool(self, network_id: str) -> tuple[str, str]:
        rows = self.state.query(
            "SELECT pool_id, gateway FROM dockerplugin_pools WHERE plugin=? AND network_id=?", (self.plugin, network_id)
        )
        if not rows:
            raise NetworkNotFound(f"network {network_id[:12]} has no pool in Docker plugin '{self.plugin}'")
        return str(rows[0]["pool_id"]), str(rows[0]["gateway"])

    @hookimpl
    def net_capabilities(self) -> NetworkCapabilities:
        scope = self._call("GetCapabilities").get("Scope") or "local"
        return NetworkCapabilities(
            scope=str(scope), published_ports=False, icc=False, internal=False, masquerade=False
        )

    @hookimpl
    def net_probe(self, home: Path) -> str | None:
        reason = self._probe()
        if reason is None and shutil.which("ip") is None:
            return "ip (iproute2) not found"
        return reason

    @hookimpl
    def net_init(self, home: Path, state: StateDB, options: Mapping[str, str]) -> None:
        self.client.require(self.interface)
        self.client.require("IpamDriver")
        state.ensure_schema(NETWORK_SCHEMA)
        self._state = state
        self._address_space = str(self._ipam("GetDefaultAddressSpaces").get("LocalDefaultAddressSpace") or "")

    @hookimpl
    def net_ipam_request_pool(
        self, network_id: str, subnet: IPv4Network | None, gateway: IPv4Address | None
    ) -> IpamPool:
        answer = self._ipam("RequestPool", {"AddressSpace": self._address_space, "Pool": str(subnet or ""),
                                            "SubPool": "", "Options": {}, "V6": False})
        pool_id, pool = str(answer["PoolID"]), IPv4Network(answer["Pool"])
        given = self._ipam("RequestAddress", {"PoolID": pool_id, "Address": str(gateway or ""),
                                             "Options": GATEWAY_REQUEST})
        address = IPv4Interface(given["Address"]).ip
        with self.state.transaction() as db:
            db.execute(
                "INSERT INTO dockerplugin_pools VALUES (?, ?, ?, ?)", (self.plugin, network_id, pool_id, str(address))
            )
        return IpamPool(pool, address)

    @hookimpl
    def net_ipam_release_pool(self, network_id: str) -> None:
        rows = self.state.query(
            "SELECT pool_id, gateway FROM dockerplugin_pools WHERE plugin=? AND network_id=?", (self.plugin, network_id)
        )
        if not rows:
            return
        pool_id = str(rows[0]["pool_id"])
        self._ipam("ReleaseAddress", {"PoolID": pool_id, "Address": str(rows[0]["gateway"])})
        self._ipam("ReleasePool", {"PoolID": pool_id})
        with self.state.transaction() as db:
            db.execute("DELETE FROM dockerplugin_pools WHERE plugin=? AND network_id=?", (self.plugin, network_id))

    @hookimpl
    def net_ipam_request_address(
        self, network: Network, endpoint_id: str, address: IPv4Address | None
    ) -> IPv4Interface:
        pool_id, _ = self._pool(network.id)
        given = self._ipam("RequestAddress", {"PoolID": pool_id, "Address": str(address or ""), "Options": {}})
        allocated = IPv4Interface(given["Address"])
        with self.state.transaction() as db:
            db.execute("INSERT INTO dockerplugin_addresses VALUES (?, ?, ?, ?)",
                       (self.plugin, endpoint_id, network.id, str(allocated)))
        return allocated

    @hookimpl
    def net_ipam_release_address(self, network_id: str, endpoint_id: str) -> None:
        rows = self.state.query(
            "SELECT address FROM dockerplugin_addresses WHERE plugin=? AND endpoint_id=?", (self.plugin, endpoint_id)
        )
        if not rows:
            return
        pool_id, _ = self._pool(network_id)
        self._ipam("ReleaseAddress", {"PoolID": pool_id, "Address": str(rows[0]["address"])})
        with self.state.transaction() as db:
            db.execute(
                "DELETE FROM dockerplugin_addresses WHERE plugin=? AND endpoint_id=?", (self.plugin, endpoint_id)
            )

    @hookimpl
    def net_create_network(self, network: Network) -> dict[str, str]:
        self._call("CreateNetwork", {
            "NetworkID": network.id,
            "Options": {"com.docker.network.generic": dict(network.options)},
            "IPv4Data": [{"AddressSpace": self._address_space, "Pool": str(network.subnet),
                          "Gateway": f"{network.gateway}/{network.subnet.prefixlen}", "AuxAddresses": {}}],
            "IPv6Data": [],
        })
        return {"plugin": self.plugin}

    @hookimpl
    def net_delete_network(self, network: Network) -> None:
        self._call("DeleteNetwork", {"NetworkID": network.id})

    @hookimpl
    def net_create_endpoint(self, network: Network, endpoint: Endpoint) -> EndpointInterface:
        answer = self._call("CreateEndpoint", {
            "NetworkID": network.id, "EndpointID": endpoint.id, "Options": {},
            "Interface": {"Address": str(endpoint.address), "AddressIPv6": "", "MacAddress": ""},
        })
        interface = answer.get("Interface") or {}
        return EndpointInterface(host_ifname="", mac=str(interface.get("MacAddress") or ""))

    @hookimpl
    def net_join(self, network: Network, endpoint: Endpoint, sandbox: Path) -> JoinInfo:
        answer = self._call("Join", {"NetworkID": network.id, "EndpointID": endpoint.id,
                                     "SandboxKey": str(sandbox), "Options": {}})
        names = answer.get("InterfaceName") or {}
        source = str(names.get("SrcName") or "")
        if not source:
            raise PluginError(f"Docker plugin '{self.plugin}' joined endpoint {endpoint.id[:12]} without an interface")
        inside = ["nsenter", f"--net={sandbox}", "ip"]
        taken = _run([*inside, "-o", "link", "show"], "listing the sandbox's interfaces")
        names_inside = {line.split(": ")[1].split("@")[0] for line in taken.splitlines() if ": " in line}
        ifname = endpoint.request_ifname or next(
            f"{names.get('DstPrefix') or 'eth'}{n}" for n in range(len(names_inside) + 1)
            if f"{names.get('DstPrefix') or 'eth'}{n}" not in names_inside
        )
        # As libnetwork: the plugin's interface goes into the sandbox, which then configures it.
        _run(["ip", "link", "set", "dev", source, "netns", str(sandbox)], "moving the interface into the sandbox")
        _run([*inside, "link", "set", "dev", source, "name", ifname], "naming the interface")
        _run([*inside, "addr", "add", str(endpoint.address), "dev", ifname], "addressing the interface")
        _run([*inside, "link", "set", "dev", ifname, "up"], "bringing the interface up")
        _run([*inside, "link", "set", "dev", "lo", "up"], "bringing lo up")
        gateway_text = str(answer.get("Gateway") or "")
        gateway = IPv4Address(gateway_text) if gateway_text else None
        if gateway is not None:
            _run([*inside, "route", "add", "default", "via", str(gateway)], "adding the default route")
        return JoinInfo(ifname=ifname, gateway=gateway)

    @hookimpl
    def net_leave(self, network: Network, endpoint: Endpoint, sandbox: Path) -> None:
        self._call("Leave", {"NetworkID": network.id, "EndpointID": endpoint.id})
        if endpoint.ifname and sandbox.exists():
            shown = subprocess.run(["nsenter", f"--net={sandbox}", "ip", "link", "show", "dev", endpoint.ifname],
                                   capture_output=True, check=False)
            if shown.returncode == 0:
                _run(["nsenter", f"--net={sandbox}", "ip", "link", "del", "dev", endpoint.ifname],
                     "removing the interface from the sandbox")

    @hookimpl
    def net_delete_endpoint(self, network: Network, endpoint: Endpoint) -> None:
        self._call("DeleteEndpoint", {"NetworkID": network.id, "EndpointID": endpoint.id})

    @hookimpl
    def net_endpoint_oper_info(self, network: Network, endpoint: Endpoint) -> dict[str, str]:
        value = self._call("EndpointOperInfo", {"NetworkID": network.id, "EndpointID": endpoint.id}).get("Value")
        return {str(k): str(v) for k, v in (value or {}).items()}

    @hookimpl
    def net_program_external_connectivity(self, network: Network, endpoint: Endpoint) -> None:
        self._call("ProgramExternalConnectivity", {"NetworkID": network.id, "EndpointID": endpoint.id, "Options": {}})

    @hookimpl
    def net_revoke_external_connectivity(self, network: Network, endpoint: Endpoint) -> None:
        self._call("RevokeExternalConnectivity", {"NetworkID": network.id, "EndpointID": endpoint.id})

    @hookimpl
    def net_reconcile(self, networks: list[Network], endpoints: list[Endpoint]) -> list[str]:
        """The plugin keeps its own state; drivebay holds nothing of it beyond what core reconciles."""
        return []


REMOTE_CLASSES: dict[str, type[_Remote]] = {
    "graph": RemoteGraphDriver,
    "volume": RemoteVolumeDriver,
    "log": RemoteLogDriver,
    "network": RemoteNetworkDriver,
}


def remote_driver(kind: str, plugin: str) -> object:
    """The driver object of ``kind`` that calls Docker plugin ``plugin``."""
    cls = REMOTE_CLASSES.get(kind)
    if cls is None:
        raise DriverNotFound(
            f"a {kind} driver cannot be a Docker plugin in drivebay (docker-plugin:{plugin}); "
            f"use one of the kinds {', '.join(REMOTE_CLASSES)} or an installed {kind} driver"
        )
    return cls(plugin)
