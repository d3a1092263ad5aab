"""The driver's nftables rules, in tables of its own, through the ``nft`` CLI.

Two tables named :data:`TABLE`: ``ip`` for NAT and routed forwarding,
``bridge`` for ICC (traffic between ports of one bridge never reaches the
``ip`` forward hook). Every rule carries a comment tag, ``net:<id>`` or
``ep:<id>``, and the scope of the drivebay root that made it (several roots
may share a namespace), so removing a network or endpoint deletes exactly its
own rules and reconciliation finds rules whose owner is gone without touching
another root's. The set ``bridges``
holds the driver's bridge names, so one rule per network isolates it from all
the others.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from drivebay.errors import DriverNotSupported
from drivebay.hookspecs.network import PortMapping

TABLE = "drivebay_bridge"
NAT_PRIORITY_DST = -100
NAT_PRIORITY_SRC = 100

BASE = f"""add table ip {TABLE}
add chain ip {TABLE} prerouting {{ type nat hook prerouting priority {NAT_PRIORITY_DST}; }}
add chain ip {TABLE} output {{ type nat hook output priority {NAT_PRIORITY_DST}; }}
add chain ip {TABLE} postrouting {{ type nat hook postrouting priority {NAT_PRIORITY_SRC}; }}
add chain ip {TABLE} forward {{ type filter hook forward priority 0; }}
add set ip {TABLE} bridges {{ type ifname; }}
add table bridge {TABLE}
add chain bridge {TABLE} forward {{ type filter hook forward priority 0; }}
"""


@dataclass(frozen=True)
class Rule:
    family: str
    chain: str
    handle: int
    tag: str


def network_tag(network_id: str, scope: str) -> str:
    return f"net:{network_id[:32]}@{scope}"


def endpoint_tag(endpoint_id: str, scope: str) -> str:
    return f"ep:{endpoint_id[:32]}@{scope}"


class Firewall:
    """Adds and removes the driver's tagged rules in the calling thread's namespace."""

    def __init__(self) -> None:
        nft = shutil.which("nft")
        if nft is None:
            raise DriverNotSupported("bridge", "nft not found", "install nftables")
        self.nft = nft

    def _run(self, args: list[str], script: str | None = None) -> str:
        proc = subprocess.run([self.nft, *args], input=script, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise DriverNotSupported(
                "bridge", f"nft {' '.join(args)} failed: {proc.stderr.strip()}", "check that nftables works here"
            )
        return proc.stdout

    def apply(self, lines: Iterable[str]) -> None:
        """Create the tables if needed and add ``lines`` (nft commands), all in one atomic batch."""
        self._run(["-f", "-"], BASE + "".join(f"{line}\n" for line in lines))

    def snapshot(self) -> tuple[list[Rule], set[str]]:
        """The tagged rules of both tables and the elements of the ``bridges`` set, from one listing each."""
        rules: list[Rule] = []
        bridges: set[str] = set()
        for family in ("ip", "bridge"):
            proc = subprocess.run(
                [self.nft, "-j", "list", "table", family, TABLE], capture_output=True, text=True, check=False
            )
            if proc.returncode != 0:  # the table does not exist yet
                continue
            for item in json.loads(proc.stdout)["nftables"]:
                rule, found = item.get("rule"), item.get("set")
                if rule and "comment" in rule:
                    rules.append(Rule(rule["family"], rule["chain"], int(rule["handle"]), rule["comment"]))
                elif found and found.get("name") == "bridges":
                    bridges.update(str(e) for e in found.get("elem", []))
        return rules, bridges

    def remove(
        self, tags: Collection[str], bridges: Collection[str] = (), snapshot: tuple[list[Rule], set[str]] | None = None
    ) -> list[Rule]:
        """Delete the rules carrying any of ``tags`` and the given ``bridges`` from the set; returns the rules."""
        rules, present = snapshot or self.snapshot()
        doomed = [r for r in rules if r.tag in tags]
        script = [f"delete rule {r.family} {TABLE} {r.chain} handle {r.handle}" for r in doomed]
        script += [f'delete element ip {TABLE} bridges {{ "{b}" }}' for b in sorted(present & set(bridges))]
        if script:
            self._run(["-f", "-"], "".join(f"{line}\n" for line in script))
        return doomed


def network_rules(
    tag: str, bridge: str, subnet: IPv4Network, *, icc: bool, masquerade: bool, internal: bool
) -> list[str]:
    """The nft commands, tagged ``tag``, that give one network its NAT, isolation and ICC policy."""
    comment = f'comment "{tag}"'
    lines = [
        f'add element ip {TABLE} bridges {{ "{bridge}" }}',
        # Published ports reached from the host via 127.0.0.1 need a source the container can answer.
        f'add rule ip {TABLE} postrouting ip saddr 127.0.0.0/8 oifname "{bridge}" masquerade {comment}',
    ]
    if internal:
        lines += [
            f'add rule ip {TABLE} forward iifname "{bridge}" oifname != "{bridge}" drop {comment}',
            f'add rule ip {TABLE} forward oifname "{bridge}" iifname != "{bridge}" drop {comment}',
        ]
    else:
        lines.append(
            f'add rule ip {TABLE} forward iifname "{bridge}" oifname != "{bridge}" oifname @bridges drop {comment}'
        )
        if masquerade:
            lines.append(
                f'add rule ip {TABLE} postrouting ip saddr {subnet} oifname != "{bridge}" masquerade {comment}'
            )
    if not icc:
        lines.append(f"add rule bridge {TABLE} forward ip saddr {subnet} ip daddr {subnet} drop {comment}")
    return lines


def port_rules(
    tag: str, address: IPv4Interface, ports: Iterable[PortMapping], host_ip: IPv4Address | None
) -> list[str]:
    """DNAT rules, tagged ``tag``, that publish ``ports`` for traffic arriving at the host and from the host itself."""
    comment = f'comment "{tag}"'
    lines = []
    for port in ports:
        bound = port.host_ip or host_ip
        match = f"ip daddr {bound}" if bound else "fib daddr type local"
        target = f"{port.protocol} dport {port.host_port} dnat to {address.ip}:{port.container_port}"
        lines += [f"add rule ip {TABLE} {chain} {match} {target} {comment}" for chain in ("prerouting", "output")]
    return lines
