"""The size storage-opt: btrfs qgroups on a loop btrfs, xfs project quotas where the kernel has them."""

from __future__ import annotations

import errno
import io
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from overlay2_testkit import require_root

from drivebay.errors import MountError
from drivebay.facades.graph import GraphDriver
from drivebay.fs import btrfs
from drivebay.testing.graphs import OpenGraph, opened_graph_drivers
from drivebay.testing.scratchfs import scratch_filesystem_or_skip, write_random
from drivebay.testing.tars import layer_tar

MIB = 1 << 20


def _assert_limited(driver: GraphDriver, layer_id: str) -> None:
    """A 10M limit lets 5M in and stops a 20M write with EDQUOT or ENOSPC."""
    with driver.mounted(layer_id) as root:
        write_random(root / "small", 5 * MIB)
        with pytest.raises(OSError) as caught:
            write_random(root / "big", 20 * MIB)
        assert caught.value.errno in (errno.EDQUOT, errno.ENOSPC), caught.value


@pytest.fixture
def btrfs_overlay2(scratch: Callable[..., Path]) -> Iterator[OpenGraph]:
    root = scratch("btrfs")
    with opened_graph_drivers("overlay2", root) as open_driver:
        yield open_driver


def test_size_on_btrfs_is_a_qgroup_limited_subvolume(btrfs_overlay2: OpenGraph) -> None:
    driver = btrfs_overlay2()
    assert dict(driver.status())["Quota"] == "btrfs qgroups (layer directory as subvolume)"
    driver.create_from_tar("base", None, io.BytesIO(layer_tar({"etc/": None, "etc/motd": b"hi\n"})))
    driver.create_rw("c1", "base", {"size": "10M"})
    layer_dir = driver.home / "c1"
    assert btrfs.is_subvolume(layer_dir), "the layer directory should be a subvolume"
    _assert_limited(driver, "c1")
    # Full, the layer can't be mounted writable any more (overlay can't make its work dir): say so.
    with pytest.raises(MountError, match="free space in"):
        driver.get("c1")
    (layer_dir / "diff" / "big").unlink()
    os.sync()  # qgroup accounting catches up at the transaction commit
    with driver.mounted("c1") as root:
        assert (root / "etc" / "motd").read_bytes() == b"hi\n"
        (root / "etc" / "motd").write_bytes(b"copied up across work/ and diff/ in one subvolume\n")
    driver.remove("c1")
    assert not layer_dir.exists()
    listed = subprocess.run(
        ["btrfs", "subvolume", "list", str(driver.home)], capture_output=True, text=True, check=True
    )
    assert "c1" not in listed.stdout


def test_default_size_option_limits_read_write_layers(btrfs_overlay2: OpenGraph) -> None:
    driver = btrfs_overlay2({"size": "10M"})
    driver.create_from_tar("base", None, io.BytesIO(layer_tar({"a": b"a"})))
    assert not btrfs.is_subvolume(driver.home / "base"), "image layers take no default limit, as in moby"
    driver.create_rw("c1", "base")
    _assert_limited(driver, "c1")


def test_size_on_xfs_with_prjquota(tmp_path: Path) -> None:
    require_root()
    with (
        scratch_filesystem_or_skip(
            "xfs",
            parent=tmp_path,
            mount_options=("prjquota",),
            refused="this kernel cannot mount xfs with prjquota (built without CONFIG_XFS_QUOTA)",
        ) as mount_point,
        opened_graph_drivers("overlay2", mount_point) as open_driver,
    ):
        driver = open_driver()
        assert dict(driver.status())["Quota"] == "xfs project quota"
        driver.create_rw("c1", None, {"size": "10M"})
        _assert_limited(driver, "c1")


def test_overlay2_off_btrfs_does_not_import_the_btrfs_ioctls(tmp_path: Path) -> None:
    # Removing a layer asks which quota method the home has; off btrfs that must not load drivebay.fs.btrfs.
    probe = (
        "import sys\n"
        "from drivebay.loader import KINDS, load_driver\n"
        "from drivebay.facades.graph import GraphDriver\n"
        "from drivebay.state import StateDB\n"
        "from pathlib import Path\n"
        f"root = Path({str(tmp_path)!r})\n"
        "graph = GraphDriver(load_driver(KINDS['graph'], 'overlay2'), root / 'overlay2', StateDB.for_root(root), {})\n"
        "graph.create_rw('layer', None)\n"
        "graph.remove('layer')\n"
        "print('drivebay.fs.btrfs' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    if result.returncode and "DriverNotSupported" in result.stderr:
        pytest.skip(f"overlay2 cannot run on {tmp_path}: {result.stderr.strip().splitlines()[-1]}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "False"
