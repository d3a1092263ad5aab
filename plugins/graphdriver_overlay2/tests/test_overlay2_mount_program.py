"""The mount_program option: the same layout mounted through fuse-overlayfs (Debian's package)."""

from __future__ import annotations

import errno
import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from overlay2_testkit import mount_count, require_root

from drivebay.facades.graph import GraphDriver
from drivebay.fs.mounts import is_mountpoint, mounts_under
from drivebay.testing.graphs import opened_graph_drivers
from drivebay.testing.tars import layer_tar

FUSE_TYPE = "fuse.fuse-overlayfs"


@pytest.fixture
def fuse_overlay2(tmp_path: Path) -> Iterator[GraphDriver]:
    require_root()
    if shutil.which("fuse-overlayfs") is None:
        pytest.skip("fuse-overlayfs is not installed (apt-get install fuse-overlayfs)")
    if not os.path.exists("/dev/fuse"):
        pytest.skip("/dev/fuse is missing (load the fuse module)")
    with opened_graph_drivers("overlay2", tmp_path) as open_driver:
        driver = open_driver({"mount_program": "fuse-overlayfs"})
        driver.create_from_tar(
            "base", None, io.BytesIO(layer_tar({"etc/": None, "etc/motd": b"hi\n", "data/": None, "data/old": b"o\n"}))
        )
        yield driver


def test_status_names_the_program_and_naive_diff(fuse_overlay2: GraphDriver) -> None:
    status = dict(fuse_overlay2.status())
    assert status["Mount Program"].startswith("/usr/bin/fuse-overlayfs (fuse-overlayfs: version")
    assert status["Native Overlay Diff"].startswith("false (layers are mounted by /usr/bin/fuse-overlayfs")


def test_read_write_layer_through_fuse(fuse_overlay2: GraphDriver) -> None:
    fuse_overlay2.create_rw("c1", "base")
    path = fuse_overlay2.get("c1")
    assert [e.fstype for e in mounts_under(path)] == [FUSE_TYPE]
    (path / "etc" / "motd").unlink()
    (path / "etc" / "new").write_bytes(b"n\n")
    assert (fuse_overlay2.home / "c1" / "diff" / "etc" / "new").read_bytes() == b"n\n"
    assert fuse_overlay2.get("c1") == path and mount_count(path) == 1
    fuse_overlay2.put("c1")
    fuse_overlay2.put("c1")
    assert not is_mountpoint(path)
    assert [str(c) for c in fuse_overlay2.changes("c1")] == ["C /etc", "D /etc/motd", "A /etc/new"]


def test_applied_whiteouts_are_honoured_by_fuse_and_the_layer_is_read_only(fuse_overlay2: GraphDriver) -> None:
    fuse_overlay2.create_from_tar(
        "image",
        "base",
        io.BytesIO(
            layer_tar(
                {"etc/": None, "etc/.wh.motd": None, "data/": None, "data/.wh..wh..opq": None, "data/fresh": b"f\n"}
            )
        ),
    )
    with fuse_overlay2.mounted("image") as path:
        assert [e.fstype for e in mounts_under(path)] == [FUSE_TYPE]
        assert not (path / "etc" / "motd").exists()
        assert os.listdir(path / "data") == ["fresh"]
        with pytest.raises(OSError) as caught:
            (path / "etc" / "x").write_bytes(b"x")
        assert caught.value.errno == errno.EROFS
    fuse_overlay2.create_rw("c2", "image")
    with fuse_overlay2.mounted("c2") as path:
        assert os.listdir(path / "data") == ["fresh"]
        assert (path / "etc" / "motd").exists() is False


def test_cleanup_unmounts_fuse_mounts(fuse_overlay2: GraphDriver) -> None:
    for name in ("a", "b"):
        fuse_overlay2.create_rw(name, "base")
        fuse_overlay2.get(name)
    assert [e.fstype for e in mounts_under(fuse_overlay2.home)] == [FUSE_TYPE, FUSE_TYPE]
    fuse_overlay2.cleanup()
    assert mounts_under(fuse_overlay2.home) == []
