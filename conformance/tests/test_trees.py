"""The suite's own reference: its layer tars and the trees it expects agree with GNU tar."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from drivebay.testing.tars import tar_names
from drivebay.testing.treecompare import assert_same_tree
from drivebay_conformance.scenarios import DEEP_PARTS
from drivebay_conformance.trees import (
    CAP_NET_BIND_SERVICE,
    base_layer,
    device,
    file,
    hardlink,
    layer_tar,
    materialize,
    opaque,
    whiteout,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, mknod, security xattrs)")


def _gnu_extract(data: bytes, root: Path) -> None:
    root.mkdir()
    subprocess.run(
        ["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf", "-", "-C", str(root)],
        input=data,
        check=True,
    )


def test_a_layer_tar_extracted_by_gnu_tar_is_the_materialized_tree(tmp_path: Path) -> None:
    nodes = [
        *base_layer(),
        device("dev-null", "char", 1, 3),
        file("cap", b"x", 0o755, xattrs={"security.capability": CAP_NET_BIND_SERVICE, "user.bin": b"\x00\xff"}),
        hardlink("cap-link", "cap"),
        file("/".join(DEEP_PARTS[:3]) + "-file", b"deep"),
    ]
    nodes = [n for n in nodes if not n.path.startswith("level-")]
    (tmp_path / "expected").mkdir()
    materialize(nodes, tmp_path / "expected")
    _gnu_extract(layer_tar(nodes), tmp_path / "gnu")
    assert_same_tree(tmp_path / "expected", tmp_path / "gnu", "materialize vs GNU tar", ignore=("/",))


def test_whiteouts_in_materialize_follow_the_oci_rules(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    materialize(base_layer(), root)
    layer = [whiteout("etc/motd"), opaque("data/dir"), file("data/dir/c.txt", b"c"), whiteout("usr/share/doc")]
    materialize(layer, root)
    assert not (root / "etc" / "motd").exists()
    assert os.listdir(root / "data" / "dir") == ["c.txt"]
    assert not (root / "usr" / "share" / "doc").exists()
    assert tar_names(layer_tar(layer)) == [
        "etc/.wh.motd",
        "data/dir/.wh..wh..opq",
        "data/dir/c.txt",
        "usr/share/.wh.doc",
    ]
    assert (root / "data" / "setuid").stat().st_mode & 0o7777 == 0o4755
    assert (root / "data" / "owned").stat().st_uid == 1000
