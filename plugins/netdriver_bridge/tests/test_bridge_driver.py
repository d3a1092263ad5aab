"""The bridge driver end to end, with real namespaces, links, nft rules and packets."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest
from bridge_testkit import Namespaces, open_driver

from drivebay.errors import AddressUnavailable, InvalidConfig, NetworkExists, NetworkInUse
from drivebay.facades.network import NetworkDriver
from drivebay.hookspecs.network import Network, PortMapping
from drivebay_netdriver_bridge.driver import BridgeDriver
from drivebay_netdriver_bridge.firewall import TABLE, endpoint_tag, network_tag
from drivebay_netdriver_bridge.ipam import DEFAULT_POOLS

UPLINK = IPv4Interface("198.51.100.1/24")
OUTSIDE = IPv4Address("198.51.100.2")


def host_links() -> dict[str, dict[str, object]]:
    out = subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, check=True).stdout
    return {link["ifname"]: link for link in json.loads(out)}


def link_addresses(netns: Namespaces, ns: Path, ifname: str) -> list[str]:
    out = netns.run(ns, "ip", "-j", "addr", "show", "dev", ifname).stdout
    return [
        f"{a['local']}/{a['prefixlen']}" for link in json.loads(out) for a in link["addr_info"] if a["family"] == "inet"
    ]


def nft_rules() -> list[dict[str, object]]:
    rules = []
    for family in ("ip", "bridge"):
        proc = subprocess.run(
            ["nft", "-j", "list", "table", family, TABLE], capture_output=True, text=True, check=False
        )
        if proc.returncode == 0:
            rules += [item["rule"] for item in json.loads(proc.stdout)["nftables"] if "rule" in item]
    return rules


def scope_of(driver: NetworkDriver) -> str:
    plugin = driver.loaded.plugin
    assert isinstance(plugin, BridgeDriver)
    return plugin.scope


def ipam_rows(driver: NetworkDriver) -> tuple[int, int]:
    pools = driver.state.query("SELECT count(*) AS n FROM bridge_ipam_pools")[0]["n"]
    addresses = driver.state.query("SELECT count(*) AS n FROM bridge_ipam_addresses")[0]["n"]
    return int(pools), int(addresses)


@pytest.fixture
def outside(netns: Namespaces) -> Iterator[Path]:
    """A namespace standing for the world beyond the host, reached through the host's "uplink" veth.

    It has no route back to container subnets, so only masquerade lets replies return.
    """
    world = netns.container("world")
    subprocess.run(
        ["ip", "link", "add", "uplink", "type", "veth", "peer", "name", "eth0", "netns", world.name], check=True
    )
    subprocess.run(["ip", "addr", "add", str(UPLINK), "dev", "uplink"], check=True)
    subprocess.run(["ip", "link", "set", "uplink", "up"], check=True)
    for cmd in (
        ["ip", "addr", "add", f"{OUTSIDE}/24", "dev", "eth0"],
        ["ip", "link", "set", "eth0", "up"],
        ["ip", "link", "set", "lo", "up"],
    ):
        assert netns.run(world, *cmd).returncode == 0
    yield world


# -- hooks, one by one ------------------------------------------------------


def test_hook_net_capabilities(driver: NetworkDriver) -> None:
    caps = driver.loaded.hook.net_capabilities()
    assert caps.published_ports and caps.icc and caps.internal and caps.masquerade
    assert "com.docker.network.bridge.name" in caps.options and "internal" in caps.options


def test_hook_net_probe(driver: NetworkDriver, tmp_path: Path) -> None:
    assert driver.loaded.hook.net_probe(home=tmp_path / "nowhere") is None
    assert not (tmp_path / "nowhere").exists()


def test_hook_net_init_refuses_unknown_options(driver: NetworkDriver, tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig, match="takes no driver-wide options"):
        driver.loaded.hook.net_init(home=tmp_path, state=driver.state, options={"bogus": "1"})


def test_hook_net_create_network_makes_bridge_with_gateway(driver: NetworkDriver) -> None:
    network = driver.create_network(
        "front",
        IPv4Network("10.61.0.0/24"),
        IPv4Address("10.61.0.254"),
        {"com.docker.network.bridge.name": "dbt-front", "com.docker.network.driver.mtu": "1400"},
    )
    link = host_links()["dbt-front"]
    assert link["mtu"] == 1400 and "UP" in link["flags"]  # type: ignore[operator]
    assert [f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"] if a["family"] == "inet"] == [  # type: ignore[attr-defined]
        "10.61.0.254/24"
    ]
    assert network.driver_info == {"bridge": "dbt-front", "mtu": "1400"}
    assert Path("/proc/sys/net/ipv4/conf/dbt-front/route_localnet").read_text().strip() == "1"


def test_create_network_refuses_duplicates_and_bad_options(driver: NetworkDriver) -> None:
    driver.create_network("a", IPv4Network("10.62.0.0/24"), options={"com.docker.network.bridge.name": "dbt-a"})
    with pytest.raises(NetworkExists, match="already exists"):
        driver.create_network("a", IPv4Network("10.63.0.0/24"))
    with pytest.raises(NetworkExists, match=r"overlaps 10\.62\.0\.0/24"):
        driver.create_network("b", IPv4Network("10.62.0.128/25"))
    with pytest.raises(NetworkExists, match="interface 'dbt-a' already exists"):
        driver.create_network("c", IPv4Network("10.64.0.0/24"), options={"com.docker.network.bridge.name": "dbt-a"})
    with pytest.raises(InvalidConfig, match="no option 'color'"):
        driver.create_network("d", options={"color": "blue"})
    with pytest.raises(InvalidConfig, match="not a boolean"):
        driver.create_network("e", IPv4Network("10.65.0.0/24"), options={"com.docker.network.bridge.enable_icc": "x"})
    assert [r.network.name for r in driver.networks()] == ["a"]
    assert ipam_rows(driver) == (1, 0)  # failed creates released their pools


def test_hook_net_ipam_request_pool_skips_host_routes(driver: NetworkDriver) -> None:
    subprocess.run(["ip", "link", "add", "busy0", "type", "veth", "peer", "name", "busy1"], check=True)
    subprocess.run(["ip", "addr", "add", "172.17.3.1/24", "dev", "busy0"], check=True)
    subprocess.run(["ip", "link", "set", "busy0", "up"], check=True)
    first = driver.create_network("one")
    second = driver.create_network("two")
    assert (first.subnet, first.gateway) == (IPv4Network("172.18.0.0/16"), IPv4Address("172.18.0.1"))
    assert second.subnet == IPv4Network("172.19.0.0/16")
    assert DEFAULT_POOLS[15] == IPv4Network("192.168.0.0/20")


def test_hook_net_ipam_request_address_round_robin_and_reserved(driver: NetworkDriver) -> None:
    network = driver.create_network("tiny", IPv4Network("10.66.0.0/29"), IPv4Address("10.66.0.1"))
    hook = driver.loaded.hook

    def take(endpoint_id: str) -> str:
        return str(hook.net_ipam_request_address(network=network, endpoint_id=endpoint_id, address=None))

    assert [take("a"), take("b")] == ["10.66.0.2/29", "10.66.0.3/29"]
    hook.net_ipam_release_address(network_id=network.id, endpoint_id="a")
    # Round-robin as host-local: a released address is not handed out again before the others.
    assert [take("c"), take("d"), take("e"), take("f")] == [f"10.66.0.{n}/29" for n in (4, 5, 6, 2)]
    with pytest.raises(AddressUnavailable, match=r"no free address left in 10\.66\.0\.0/29"):
        take("g")  # never .0 (network), .1 (gateway) or .7 (broadcast)
    for bad in ("10.66.0.1", "10.66.0.7", "10.66.0.0", "10.66.0.2", "10.67.0.2"):
        with pytest.raises(AddressUnavailable):
            hook.net_ipam_request_address(network=network, endpoint_id="x", address=IPv4Address(bad))


def test_hook_net_ipam_release_address_frees_for_explicit_request(driver: NetworkDriver) -> None:
    network = driver.create_network("rel", IPv4Network("10.67.0.0/24"))
    hook = driver.loaded.hook
    hook.net_ipam_request_address(network=network, endpoint_id="a", address=IPv4Address("10.67.0.9"))
    hook.net_ipam_release_address(network_id=network.id, endpoint_id="a")
    hook.net_ipam_release_address(network_id=network.id, endpoint_id="a")  # idempotent
    assert str(hook.net_ipam_request_address(network=network, endpoint_id="b", address=IPv4Address("10.67.0.9"))) == (
        "10.67.0.9/24"
    )


def test_hook_net_ipam_release_pool_drops_allocations(driver: NetworkDriver) -> None:
    hook = driver.loaded.hook
    pool = hook.net_ipam_request_pool(network_id="p1", subnet=IPv4Network("10.68.0.0/24"), gateway=None)
    network = Network("p1", "p1", pool.subnet, pool.gateway)
    hook.net_ipam_request_address(network=network, endpoint_id="a", address=None)
    hook.net_ipam_release_pool(network_id="p1")
    assert ipam_rows(driver) == (0, 0)
    assert hook.net_ipam_request_pool(network_id="p2", subnet=IPv4Network("10.68.0.0/24"), gateway=None) == pool


def test_hook_net_create_endpoint_puts_host_end_on_bridge(driver: NetworkDriver, netns: Namespaces) -> None:
    driver.create_network("n", IPv4Network("10.69.0.0/24"), options={"com.docker.network.bridge.name": "dbt-n"})
    endpoint = driver.connect("n", netns.container())
    link = host_links()[endpoint.host_ifname]
    assert link["master"] == "dbt-n" and "UP" in link["flags"]  # type: ignore[operator]
    assert endpoint.mac == "02:42:0a:45:00:02"


def test_hook_net_join_configures_sandbox(driver: NetworkDriver, netns: Namespaces) -> None:
    driver.create_network("n", IPv4Network("10.70.0.0/24"), options={"com.docker.network.driver.mtu": "1300"})
    driver.create_network("m", IPv4Network("10.71.0.0/24"))
    box = netns.container()
    first = driver.connect("n", box, IPv4Address("10.70.0.42"))
    second = driver.connect("m", box)
    assert (first.ifname, second.ifname) == ("eth0", "eth1")
    assert link_addresses(netns, box, "eth0") == ["10.70.0.42/24"]
    link = json.loads(netns.run(box, "ip", "-j", "link", "show", "eth0").stdout)[0]
    assert link["mtu"] == 1300 and link["address"] == first.mac and "UP" in link["flags"]
    assert "UP" in json.loads(netns.run(box, "ip", "-j", "link", "show", "lo").stdout)[0]["flags"]
    routes = json.loads(netns.run(box, "ip", "-j", "route", "show", "default").stdout)
    assert next((r["gateway"], r["dev"]) for r in routes) == ("10.70.0.1", "eth0")
    with pytest.raises(AddressUnavailable, match="already in use"):
        driver.connect("n", netns.container(), IPv4Address("10.70.0.42"))


def test_hook_net_leave_removes_sandbox_interface(driver: NetworkDriver, netns: Namespaces) -> None:
    driver.create_network("n", IPv4Network("10.72.0.0/24"))
    box = netns.container()
    endpoint = driver.connect("n", box)
    network = driver.network("n")
    driver.loaded.hook.net_leave(network=network, endpoint=endpoint, sandbox=box)
    assert netns.run(box, "ip", "link", "show", "eth0").returncode != 0
    assert endpoint.host_ifname not in host_links()  # a veth pair dies together
    driver.disconnect("n", box)
    assert driver.endpoints() == []


def test_hook_net_delete_endpoint_is_idempotent(driver: NetworkDriver, netns: Namespaces) -> None:
    driver.create_network("n", IPv4Network("10.73.0.0/24"))
    endpoint = driver.connect("n", netns.container())
    network = driver.network("n")
    driver.loaded.hook.net_delete_endpoint(network=network, endpoint=endpoint)
    driver.loaded.hook.net_delete_endpoint(network=network, endpoint=endpoint)
    assert endpoint.host_ifname not in host_links()


def test_hook_net_endpoint_oper_info_in_inspect(driver: NetworkDriver, netns: Namespaces) -> None:
    driver.create_network("n", IPv4Network("10.74.0.0/24"))
    box = netns.container()
    driver.connect("n", box, ports=[PortMapping(8081, 80)])
    shown = driver.inspect("n")
    assert shown["subnet"] == "10.74.0.0/24" and shown["gateway"] == "10.74.0.1"
    [endpoint] = shown["endpoints"]
    assert (
        endpoint["address"] == "10.74.0.2/24" and endpoint["netns"] == str(box) and endpoint["ports"] == ["8081:80/tcp"]
    )
    assert endpoint["oper_info"]["state"] == "up" and endpoint["oper_info"]["sandbox_alive"] == "true"


# -- real traffic -----------------------------------------------------------


def test_containers_talk_over_the_bridge(driver: NetworkDriver, netns: Namespaces) -> None:
    network = driver.create_network("n", IPv4Network("10.75.0.0/24"))
    c1, c2 = netns.container(), netns.container()
    e1, e2 = driver.connect("n", c1), driver.connect("n", c2)
    assert netns.ping(c1, e2.address.ip) and netns.ping(c2, e1.address.ip)
    assert netns.ping(c1, network.gateway)
    server = netns.echo_server(c2, 7000)
    try:
        assert netns.echo(c1, e2.address.ip, 7000) == f"hello from {e1.address.ip}"
    finally:
        server.kill()
        server.wait()


def test_hook_net_program_external_connectivity_publishes_ports(
    driver: NetworkDriver, netns: Namespaces, outside: Path
) -> None:
    driver.create_network("n", IPv4Network("10.76.0.0/24"))
    box = netns.container()
    endpoint = driver.connect("n", box, ports=[PortMapping.parse("8080:80/tcp")])
    server = netns.echo_server(box, 80)
    try:
        for target in ("127.0.0.1", str(UPLINK.ip)):  # from the host itself
            with socket.create_connection((target, 8080), timeout=3) as conn:
                conn.sendall(b"hello")
                assert conn.recv(100).startswith(b"hello from ")
        assert netns.echo(outside, UPLINK.ip, 8080) == f"hello from {OUTSIDE}"  # from outside
    finally:
        server.kill()
        server.wait()
    with pytest.raises(AddressUnavailable, match="8080/tcp is already published"):
        driver.connect("n", netns.container(), ports=[PortMapping(8080, 81)])
    assert {r["comment"] for r in nft_rules() if str(r.get("comment", "")).startswith("ep:")} == {
        endpoint_tag(endpoint.id, scope_of(driver))
    }


def test_hook_net_revoke_external_connectivity_removes_exactly_its_rules(
    driver: NetworkDriver, netns: Namespaces
) -> None:
    driver.create_network("n", IPv4Network("10.77.0.0/24"))
    b1, b2 = netns.container(), netns.container()
    driver.connect("n", b1, ports=[PortMapping(9001, 80), PortMapping(9001, 53, "udp")])
    kept = driver.connect("n", b2, ports=[PortMapping(9002, 80)])
    before = len(nft_rules())
    driver.disconnect("n", b1)
    comments = [r.get("comment") for r in nft_rules()]
    assert len(comments) == before - 4 and comments.count(endpoint_tag(kept.id, scope_of(driver))) == 2


def test_masquerade_reaches_outside(driver: NetworkDriver, netns: Namespaces, outside: Path) -> None:
    driver.create_network("n", IPv4Network("10.78.0.0/24"))
    box = netns.container()
    driver.connect("n", box)
    server = netns.echo_server(outside, 9000)
    try:
        assert netns.echo(box, OUTSIDE, 9000) == f"hello from {UPLINK.ip}"
    finally:
        server.kill()
        server.wait()


def test_icc_off_blocks_container_to_container(driver: NetworkDriver, netns: Namespaces) -> None:
    network = driver.create_network(
        "n", IPv4Network("10.79.0.0/24"), options={"com.docker.network.bridge.enable_icc": "false"}
    )
    c1, c2 = netns.container(), netns.container()
    driver.connect("n", c1)
    e2 = driver.connect("n", c2)
    assert netns.ping(c1, network.gateway)
    assert not netns.ping(c1, e2.address.ip)


def test_two_networks_are_isolated(driver: NetworkDriver, netns: Namespaces) -> None:
    driver.create_network("n1", IPv4Network("10.80.0.0/24"))
    driver.create_network("n2", IPv4Network("10.81.0.0/24"))
    c1, c2 = netns.container(), netns.container()
    driver.connect("n1", c1)
    e2 = driver.connect("n2", c2)
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"  # so only the rules stop it
    assert netns.ping(c1, IPv4Address("10.81.0.1"))  # the other gateway is the host itself
    assert not netns.ping(c1, e2.address.ip)


def test_internal_network_has_no_route_out(driver: NetworkDriver, netns: Namespaces, outside: Path) -> None:
    network = driver.create_network("n", IPv4Network("10.82.0.0/24"), options={"internal": "true"})
    box = netns.container()
    endpoint = driver.connect("n", box)
    assert netns.run(box, "ip", "route", "show", "default").stdout.strip() == ""
    assert not netns.ping(box, OUTSIDE)
    assert netns.ping(box, network.gateway)
    with pytest.raises(InvalidConfig, match="internal"):
        driver.connect("n", netns.container(), ports=[PortMapping(8080, 80)])
    assert endpoint.address.ip == IPv4Address("10.82.0.2")


# -- removal and cleanup ----------------------------------------------------


def test_rm_refuses_while_connected_unless_forced(driver: NetworkDriver, netns: Namespaces) -> None:
    driver.create_network("n", IPv4Network("10.83.0.0/24"))
    driver.connect("n", netns.container())
    with pytest.raises(NetworkInUse, match="1 connected endpoint"):
        driver.remove_network("n")
    driver.remove_network("n", force=True)
    assert driver.networks() == [] and driver.endpoints() == []


def test_hook_net_delete_network_leaves_nothing(driver: NetworkDriver, netns: Namespaces) -> None:
    before = host_links()
    driver.create_network("n", IPv4Network("10.84.0.0/24"), options={"com.docker.network.bridge.enable_icc": "false"})
    driver.create_network("m", IPv4Network("10.85.0.0/24"), options={"internal": "true"})
    boxes = [netns.container() for _ in range(3)]
    driver.connect("n", boxes[0], ports=[PortMapping(8080, 80)])
    driver.connect("n", boxes[1])
    driver.connect("m", boxes[2])
    driver.disconnect("n", boxes[0])
    driver.remove_network("n", force=True)
    driver.disconnect("m", boxes[2])
    driver.remove_network("m")
    assert host_links().keys() == before.keys()
    assert all(link["addr_info"] == before[name]["addr_info"] for name, link in host_links().items())
    assert nft_rules() == []
    assert ipam_rows(driver) == (0, 0)
    for box in boxes:
        assert json.loads(netns.run(box, "ip", "-j", "link").stdout)[0]["ifname"] == "lo"
        assert len(json.loads(netns.run(box, "ip", "-j", "link").stdout)) == 1


# -- crash safety and reconciliation ---------------------------------------

KILL_AFTER_JOIN = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    import drivebay
    from drivebay.facades.network import NetworkDriver
    from drivebay.loader import KINDS, load_driver
    from drivebay.state import StateDB

    class KillAfterJoin:
        @drivebay.hookimpl(wrapper=True)
        def net_join(self):
            yield
            os.kill(os.getpid(), signal.SIGKILL)

    root = Path(sys.argv[1])
    loaded = load_driver(KINDS["network"], "bridge")
    loaded.manager.register(KillAfterJoin())
    NetworkDriver(loaded, root / "bridge", StateDB.for_root(root)).connect("n", Path(sys.argv[2]))
    """
)


def test_hook_net_reconcile_after_kill_mid_connect_and_deleted_sandbox(
    driver: NetworkDriver, netns: Namespaces, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    driver.create_network("n", IPv4Network("10.86.0.0/24"))
    killed_box, gone_box, kept_box = netns.container(), netns.container(), netns.container()
    kept = driver.connect("n", kept_box)
    gone = driver.connect("n", gone_box)
    proc = subprocess.run(
        ["ip", "netns", "exec", netns.host.name, sys.executable, "-c", KILL_AFTER_JOIN, str(root), str(killed_box)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == -9, proc.stderr
    [half] = driver.state.query("SELECT * FROM net_endpoints WHERE state='creating'")
    assert f"vdb{half['id'][:12]}" in host_links()
    assert netns.run(killed_box, "ip", "link", "show", "eth0").returncode == 0
    netns.delete(gone_box)

    restarted = open_driver(root)

    assert len(restarted.reconciled) == 2
    assert [e.id for e in restarted.endpoints()] == [kept.id]
    assert f"vdb{half['id'][:12]}" not in host_links() and gone.host_ifname not in host_links()
    assert netns.run(killed_box, "ip", "link", "show", "eth0").returncode != 0
    # Both addresses are free again: the same ones can be asked for explicitly.
    again = [
        restarted.connect("n", netns.container(), IPv4Address(a))
        for a in (half["address"].split("/")[0], gone.address.ip)
    ]
    assert [str(e.address) for e in again] == [half["address"], str(gone.address)]


def test_hook_net_reconcile_removes_leaked_records_links_and_rules(driver: NetworkDriver, netns: Namespaces) -> None:
    network = driver.create_network("n", IPv4Network("10.87.0.0/24"))
    scope = scope_of(driver)
    hook = driver.loaded.hook
    hook.net_ipam_request_address(network=network, endpoint_id="f" * 64, address=None)
    bridge = network.driver_info["bridge"]
    for leak, master in (("vdb0123456789ab", ["master", bridge]), ("vdb0123456789cd", [])):
        subprocess.run(
            ["ip", "link", "add", leak, *master, "type", "veth", "peer", "name", f"peer{leak[-4:]}"], check=True
        )
    for tag in (endpoint_tag("dead", scope), endpoint_tag("dead", "otherroot")):
        rule = ["nft", "add", "rule", "ip", TABLE, "output", "tcp", "dport", "1", "drop", "comment", f'"{tag}"']
        subprocess.run(rule, check=True)

    removed = hook.net_reconcile(networks=[network], endpoints=[])

    assert any("address 10.87.0.2" in line for line in removed)
    assert "interface vdb0123456789ab" in removed
    assert any(endpoint_tag("dead", scope) in line for line in removed)
    assert ipam_rows(driver) == (1, 0) and "vdb0123456789ab" not in host_links()
    # What another drivebay root in the same namespace made is left alone.
    assert "vdb0123456789cd" in host_links()
    assert {r.get("comment") for r in nft_rules()} == {
        network_tag(network.id, scope),
        endpoint_tag("dead", "otherroot"),
    }


def test_host_binding_limits_published_ports(driver: NetworkDriver, netns: Namespaces, outside: Path) -> None:
    driver.create_network(
        "n", IPv4Network("10.88.0.0/24"), options={"com.docker.network.bridge.host_binding_ipv4": str(UPLINK.ip)}
    )
    box = netns.container()
    driver.connect("n", box, ports=[PortMapping(8082, 80)])
    server = netns.echo_server(box, 80)
    try:
        assert netns.echo(outside, UPLINK.ip, 8082) == f"hello from {OUTSIDE}"
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", 8082), timeout=3):
            pass
    finally:
        server.kill()
        server.wait()


def test_masquerade_off_leaves_sources_untranslated(driver: NetworkDriver, netns: Namespaces, outside: Path) -> None:
    options = {"com.docker.network.bridge.enable_ip_masquerade": "false"}
    driver.create_network("n", IPv4Network("10.89.0.0/24"), options=options)
    box = netns.container()
    driver.connect("n", box)
    server = netns.echo_server(outside, 9000)
    try:
        assert netns.echo(box, OUTSIDE, 9000) is None  # the outside has no route back to 10.89.0.0/24
        assert netns.run(outside, "ip", "route", "add", "10.89.0.0/24", "via", str(UPLINK.ip)).returncode == 0
        assert netns.echo(box, OUTSIDE, 9000) == "hello from 10.89.0.2"
    finally:
        server.kill()
        server.wait()
