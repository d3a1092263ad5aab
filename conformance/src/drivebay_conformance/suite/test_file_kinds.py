"""File kinds: every kind of file a container can hold survives a commit, and an applied tar recreates each."""

from __future__ import annotations

import pytest

from drivebay_conformance.harness import DriverCase, require_capability
from drivebay_conformance.scenarios import BIG, DEEP_PARTS, KINDS, LONG_NAME, Kind
from drivebay_conformance.trees import (
    BASE_MTIME,
    CAP_NET_BIND_SERVICE,
    Node,
    base_layer,
    device,
    directory,
    fifo,
    file,
    hardlink,
    symlink,
)

PARAMS = [pytest.param(kind, id=kind.name) for kind in KINDS] + [pytest.param(BIG, id=BIG.name, marks=pytest.mark.slow)]


@pytest.mark.parametrize("kind", PARAMS)
def test_a_file_kind_written_in_a_container_survives_commit(driver_case: DriverCase, kind: Kind) -> None:
    """Made in a read-write layer, the file shows in ``changes``; the layer's diff applied onto the same parent
    gives a layer with the identical tree (content, mode, owner, xattrs, ns mtime, link targets, device
    numbers, hardlink identity), and an empty child of it shows the same."""
    if kind.capability:
        require_capability(driver_case, kind.capability)
    graph = driver_case.graph
    driver_case.apply_nodes("base", None, base_layer())
    graph.create_rw("rw", "base")
    with graph.mounted("rw") as view:
        kind.make(view)
    changes = [str(c) for c in graph.changes("rw")]
    assert f"A {kind.path}" in changes, f"{driver_case.chain('rw')}: changes lack 'A {kind.path}'; got {changes}"
    commit = driver_case.commit("rw", "committed")
    driver_case.assert_same_view("rw", "committed", what=f"{kind.name} committed onto a sibling")
    graph.create("child", "committed")
    driver_case.assert_same_view("committed", "child", what=f"an empty child of the committed {kind.name}")
    driver_case.assert_applied_size("committed", commit.size)


def _kinds_layer(case: DriverCase) -> list[Node]:
    t = BASE_MTIME + 1000
    nodes = [
        directory("kinds", mtime=t),
        file("kinds/file", b"content\n", mtime=t + 1),
        symlink("kinds/dangling", "no/such/target", mtime=t + 2),
        symlink("kinds/absolute", "/etc/passwd", mtime=t + 3),
        symlink("kinds/relative", "../etc/passwd", mtime=t + 4),
        fifo("kinds/fifo"),
        file("kinds/empty", b"", 0o600, mtime=t + 6),
        directory("kinds/empty-dir", 0o700, mtime=t + 7),
        file("kinds/setuid-owned", b"s\n", 0o4750, uid=1000, gid=50, mtime=t + 8),
    ]
    deep = "kinds"
    for part in DEEP_PARTS:
        deep = f"{deep}/{part}"
        nodes.append(directory(deep, mtime=t + 9))
    nodes.append(file(f"{deep}/bottom.txt", b"bottom\n", mtime=t + 10))
    if case.capabilities.long_names:
        nodes.append(file(f"kinds/{LONG_NAME}", b"long\n", mtime=t + 5))
    if case.capabilities.hardlinks:
        nodes.append(hardlink("kinds/hardlink", "kinds/file"))
    if case.capabilities.device_nodes:
        nodes += [device("kinds/null", "char", 1, 3), device("kinds/loop", "block", 7, 200, 0o660)]
    if case.capabilities.xattrs:
        nodes += [
            file("kinds/xattrs", b"x\n", xattrs={"user.text": b"value", "user.binary": b"\x00\x01\xfe\xff"}),
            file("kinds/ping", b"ping\n", 0o755, xattrs={"security.capability": CAP_NET_BIND_SERVICE}),
        ]
    return nodes


def test_an_applied_tar_recreates_every_file_kind(driver_case: DriverCase) -> None:
    """A PAX tar written by Python's tarfile, holding every kind the driver declares, applied as a layer shows
    the same tree as the tar applied to a plain directory. Kinds the driver declares it lacks are left out."""
    nodes = _kinds_layer(driver_case)
    driver_case.apply_nodes("base", None, base_layer())
    size = driver_case.apply_nodes("kinds", "base", nodes)
    reference = driver_case.reference("expected", base_layer(), nodes)
    driver_case.assert_view_matches("kinds", reference, "the tar applied to a directory")
    driver_case.assert_applied_size("kinds", size)
