"""overlay2 through core's facade: layout, probe, mounts, adoption, read-only layers, status (ext4 and xfs)."""

from __future__ import annotations

import errno
import io
import os
import re
from pathlib import Path

import pytest
from overlay2_testkit import mount_count, require_root

from drivebay.errors import DriverNotSupported, InvalidConfig, LayerNotFound, MountError, QuotaNotSupported
from drivebay.facades.graph import GraphDriver
from drivebay.fs.mounts import is_mountpoint, mount, mounts_under, unmount
from drivebay.loader import KINDS, load_driver
from drivebay.testing.graphs import OpenGraph
from drivebay.testing.scratchfs import scratch_filesystem_or_skip
from drivebay.testing.tars import layer_tar
from drivebay_graphdriver_overlay2.layout import SHORT_ID_LENGTH


def _base(driver: GraphDriver, layer_id: str = "base") -> str:
    driver.create_from_tar(layer_id, None, io.BytesIO(layer_tar({"etc/": None, "etc/motd": b"hello\n", "bin/": None})))
    return layer_id


def test_hook_graph_capabilities_declares_overlay_limits(overlay2: GraphDriver) -> None:
    caps = overlay2.capabilities
    assert caps.native_diff and caps.quota
    assert caps.quota_filesystems == ("btrfs", "xfs")
    # This kernel (6.18) has lowerdir+, so overlayfs' own OVL_MAX_STACK applies, not moby's page-bound 128.
    assert caps.max_depth == 500


def test_hook_graph_create_follows_moby_layout(overlay2: GraphDriver) -> None:
    _base(overlay2)
    overlay2.create("mid", "base")
    overlay2.create_rw("top", "mid")
    home = overlay2.home
    short = {layer: (home / layer / "link").read_text() for layer in ("base", "mid", "top")}
    for layer, link in short.items():
        assert re.fullmatch(f"[A-Z2-7]{{{SHORT_ID_LENGTH}}}", link), link
        assert os.readlink(home / "l" / link) == f"../{layer}/diff"
        assert (home / layer / "diff").is_dir() and (home / layer / "work").is_dir()
        assert (home / layer / "merged").is_dir()
    assert not (home / "base" / "lower").exists()
    assert (home / "mid" / "lower").read_text() == f"l/{short['base']}"
    assert (home / "top" / "lower").read_text() == f"l/{short['mid']}:l/{short['base']}"
    assert (home / "base" / "diff" / "etc" / "motd").read_bytes() == b"hello\n"


def test_hook_graph_get_mounts_child_and_serves_base_from_diff(overlay2: GraphDriver) -> None:
    _base(overlay2)
    overlay2.create_rw("c1", "base")
    base_path = overlay2.get("base")
    assert base_path == overlay2.home / "base" / "diff"
    assert not is_mountpoint(base_path)
    path = overlay2.get("c1")
    assert path == overlay2.home / "c1" / "merged"
    assert [e.fstype for e in mounts_under(path)] == ["overlay"]
    assert (path / "etc" / "motd").read_bytes() == b"hello\n"
    (path / "etc" / "motd").write_bytes(b"changed\n")
    assert (overlay2.home / "c1" / "diff" / "etc" / "motd").read_bytes() == b"changed\n"
    assert (overlay2.home / "base" / "diff" / "etc" / "motd").read_bytes() == b"hello\n"
    assert overlay2.get("c1") == path
    assert mount_count(path) == 1
    overlay2.put("c1")
    assert is_mountpoint(path)
    overlay2.put("c1")
    overlay2.put("base")


def test_hook_graph_put_unmounts_at_last_reference(overlay2: GraphDriver) -> None:
    _base(overlay2)
    overlay2.create_rw("c1", "base")
    path = overlay2.get("c1")
    overlay2.put("c1")
    assert not is_mountpoint(path)
    # put must also succeed when nothing is mounted (core calls it before remove).
    overlay2.loaded.hook.graph_put(layer_id="c1")
    overlay2.loaded.hook.graph_put(layer_id="base")


def test_hook_graph_create_rw_layer_writes_into_its_upper_dir(overlay2: GraphDriver) -> None:
    _base(overlay2)
    overlay2.create_rw("c1", "base")
    assert not (overlay2.home / "c1" / "committed").exists()
    assert (overlay2.home / "base" / "committed").exists()
    with overlay2.mounted("c1") as path:
        (path / "etc" / "motd").unlink()
        (path / "bin" / "tool").write_bytes(b"#!/bin/sh\n")
    upper = overlay2.home / "c1" / "diff"
    assert os.lstat(upper / "etc" / "motd").st_rdev == 0 and not (upper / "etc" / "motd").is_file()
    assert (upper / "bin" / "tool").read_bytes() == b"#!/bin/sh\n"
    # A read-write layer with no parent is its diff dir, written directly.
    overlay2.create_rw("scratch")
    with overlay2.mounted("scratch") as path:
        assert path == overlay2.home / "scratch" / "diff"
        (path / "f").write_bytes(b"f")


def test_read_only_layers_are_mounted_read_only(overlay2: GraphDriver) -> None:
    _base(overlay2)
    overlay2.create_from_tar("image", "base", io.BytesIO(layer_tar({"etc/new": b"n\n"})))
    path = overlay2.get("image")
    try:
        assert (path / "etc" / "new").read_bytes() == b"n\n"
        assert (path / "etc" / "motd").read_bytes() == b"hello\n"
        with pytest.raises(OSError) as caught:
            (path / "etc" / "motd").write_bytes(b"no\n")
        assert caught.value.errno == errno.EROFS
        assert "ro" in mounts_under(path)[0].options.split(",")
    finally:
        overlay2.put("image")


def test_existing_mount_is_adopted_by_a_new_process(open_overlay2: OpenGraph) -> None:
    first = open_overlay2()
    _base(first)
    first.create_rw("c1", "base")
    path = first.get("c1")
    (path / "written-by-first").write_bytes(b"1")
    # A second facade over the same root is what a second drivebay process sees: the mount is already there.
    second = open_overlay2()
    assert second.get("c1") == path
    assert mount_count(path) == 1
    assert (path / "written-by-first").read_bytes() == b"1"
    assert second.refcount("c1") == 2
    second.put("c1")
    first.put("c1")
    assert not is_mountpoint(path)


def test_hook_graph_remove_deletes_layer_and_link(overlay2: GraphDriver) -> None:
    _base(overlay2)
    overlay2.create_rw("c1", "base")
    link = (overlay2.home / "c1" / "link").read_text()
    overlay2.remove("c1")
    assert not (overlay2.home / "c1").exists()
    assert not (overlay2.home / "l" / link).is_symlink()
    with pytest.raises(LayerNotFound):
        overlay2.loaded.hook.graph_remove(layer_id="c1")


def test_hook_graph_exists(overlay2: GraphDriver) -> None:
    assert not overlay2.exists("base")
    _base(overlay2)
    assert overlay2.exists("base")
    assert not overlay2.loaded.hook.graph_exists(layer_id="nope")


def test_hook_graph_cleanup_unmounts_everything(overlay2: GraphDriver) -> None:
    _base(overlay2)
    for name in ("a", "b", "c"):
        overlay2.create_rw(name, "base")
        overlay2.get(name)
    assert len([e for e in mounts_under(overlay2.home) if e.fstype == "overlay"]) == 3
    overlay2.cleanup()
    assert mounts_under(overlay2.home) == []
    assert overlay2.refcount("a") == 0


def test_hook_graph_status_reports_overlay_facts(overlay2: GraphDriver, backing_root: Path) -> None:
    status = dict(overlay2.status())
    assert status["Backing Filesystem"] == ("xfs" if "xfs" in str(backing_root) else "ext4")
    assert status["Supports d_type"] == "true"
    assert status["Native Overlay Diff"] == "true"
    assert status["Max Depth"] == "500 lower layers"
    assert status["userxattr"] == "false"
    assert status["Mount Program"] == (
        "kernel overlay (mount(2) with relative paths up to a page; past it: new mount API, lowerdir+)"
    )
    if status["Backing Filesystem"] == "xfs":
        assert "is not mounted with prjquota" in status["Quota"]
    else:
        assert status["Quota"].endswith("is on ext4; 'size' needs xfs mounted with prjquota, or btrfs")


def test_hook_graph_metadata_names_the_overlay_dirs(overlay2: GraphDriver) -> None:
    _base(overlay2)
    overlay2.create_rw("c1", "base")
    meta = overlay2.metadata("c1")
    home = overlay2.home
    assert meta["UpperDir"] == str(home / "c1" / "diff")
    assert meta["WorkDir"] == str(home / "c1" / "work")
    assert meta["MergedDir"] == str(home / "c1" / "merged")
    assert Path(meta["LowerDir"]).resolve() == (home / "base" / "diff").resolve()
    assert "LowerDir" not in overlay2.metadata("base")


def test_hook_graph_mounts_describes_mounts_that_work(overlay2: GraphDriver, tmp_path: Path) -> None:
    _base(overlay2)
    overlay2.create_from_tar("image", "base", io.BytesIO(layer_tar({"etc/new": b"n\n"})))
    overlay2.create_rw("c1", "image")
    home = overlay2.home
    (base_mount,) = overlay2.mounts("base").mounts
    assert base_mount == type(base_mount)("bind", str(home / "base" / "diff"), ("rbind", "ro"))
    (image_mount,) = overlay2.mounts("image").mounts
    assert image_mount.type == "overlay" and image_mount.options[:2] == ("ro", "index=off")
    assert not any(o.startswith(("upperdir=", "workdir=")) for o in image_mount.options)
    c1_plan = overlay2.mounts("c1")
    assert not c1_plan.holds_reference and overlay2.refcount("c1") == 0, "a described mount takes no reference"
    (c1_mount,) = c1_plan.mounts
    index_off, lowerdir, upperdir, workdir = c1_mount.options
    assert index_off == "index=off", "the driver's own mounts turn the inodes index off, as moby's do"
    assert [Path(p).resolve() for p in lowerdir.removeprefix("lowerdir=").split(":")] == [
        (home / "image" / "diff").resolve(),
        (home / "base" / "diff").resolve(),
    ]
    assert upperdir == f"upperdir={home / 'c1' / 'diff'}" and workdir == f"workdir={home / 'c1' / 'work'}"
    # What a containerd-style caller would do with the description.
    target = tmp_path / "by-caller"
    target.mkdir()
    mount(c1_mount.source, target, c1_mount.type, data=",".join(c1_mount.options))
    try:
        assert (target / "etc" / "new").read_bytes() == b"n\n"
        assert (target / "etc" / "motd").read_bytes() == b"hello\n"
    finally:
        unmount(target)


def test_hook_graph_probe_accepts_this_host_and_leaves_nothing(tmp_path: Path) -> None:
    require_root()
    loaded = load_driver(KINDS["graph"], "overlay2")
    home = tmp_path / "root" / "overlay2"
    assert loaded.hook.graph_probe(home=home) is None
    assert list(tmp_path.iterdir()) == []


def test_hook_graph_probe_refuses_overlay_backing(tmp_path: Path) -> None:
    require_root()
    for name in ("lower", "upper", "work", "merged"):
        (tmp_path / name).mkdir()
    mount(
        "overlay",
        tmp_path / "merged",
        "overlay",
        data=f"lowerdir={tmp_path}/lower,upperdir={tmp_path}/upper,workdir={tmp_path}/work",
    )
    try:
        loaded = load_driver(KINDS["graph"], "overlay2")
        reason = loaded.hook.graph_probe(home=tmp_path / "merged" / "overlay2")
        assert reason == "backing fs overlay cannot hold overlay upper layers"
    finally:
        unmount(tmp_path / "merged")


def test_hook_graph_probe_refuses_xfs_without_d_type(tmp_path: Path) -> None:
    require_root()
    # ftype=0 needs the old v4 format (crc=0); kernels built without CONFIG_XFS_SUPPORT_V4 can't mount it.
    with scratch_filesystem_or_skip(
        "xfs",
        parent=tmp_path,
        mkfs_args=("-m", "crc=0", "-n", "ftype=0"),
        refused="mkfs.xfs cannot make, or this kernel cannot mount, xfs v4 (ftype=0; no CONFIG_XFS_SUPPORT_V4?)",
    ) as mount_point:
        loaded = load_driver(KINDS["graph"], "overlay2")
        reason = loaded.hook.graph_probe(home=mount_point / "overlay2")
        assert reason is not None and "d_type" in reason
        with pytest.raises(DriverNotSupported, match="d_type"):
            loaded.hook.graph_init(home=mount_point / "overlay2", options={})


def test_hook_graph_init_refuses_unknown_options_and_size_on_ext4(tmp_path: Path) -> None:
    require_root()
    loaded = load_driver(KINDS["graph"], "overlay2")
    with pytest.raises(InvalidConfig, match="no option 'colour'"):
        loaded.hook.graph_init(home=tmp_path / "overlay2", options={"colour": "blue"})
    with pytest.raises(QuotaNotSupported, match="needs xfs mounted with prjquota, or btrfs"):
        loaded.hook.graph_init(home=tmp_path / "overlay2", options={"overlay2.size": "10G"})
    with pytest.raises(DriverNotSupported, match="no-such-program"):
        loaded.hook.graph_init(home=tmp_path / "overlay2", options={"mount_program": "no-such-program"})


def test_size_on_ext4_is_refused_naming_what_works(ext4_overlay2: GraphDriver) -> None:
    with pytest.raises(QuotaNotSupported, match="needs xfs mounted with prjquota, or btrfs"):
        ext4_overlay2.create_rw("c1", None, {"size": "10M"})
    with pytest.raises(InvalidConfig, match="only size"):
        ext4_overlay2.create_rw("c1", None, {"inodes": "10"})
    assert not ext4_overlay2.exists("c1")
    assert not (ext4_overlay2.home / "c1").exists()


def test_a_broken_lower_is_a_mount_error_naming_it(overlay2: GraphDriver) -> None:
    _base(overlay2)
    overlay2.create_rw("c1", "base")
    short = (overlay2.home / "base" / "link").read_text()
    (overlay2.home / "l" / short).unlink()
    # mount(2) says only ENOENT; the driver replays the options through fsconfig, which names the one refused.
    with pytest.raises(MountError, match=f"layer 'c1' \\(1 lower layers\\).*lowerdir\\+=l/{short}.*No such file"):
        overlay2.get("c1")
    assert overlay2.refcount("c1") == 0
    assert not is_mountpoint(overlay2.home / "c1" / "merged")


def test_a_layer_without_its_diff_dir_is_not_found(overlay2: GraphDriver) -> None:
    _base(overlay2)
    overlay2.create_rw("c1", "base")
    (overlay2.home / "c1" / "diff").rmdir()
    with pytest.raises(LayerNotFound, match="overlay2 has no layer 'c1'"):
        overlay2.loaded.hook.graph_get(layer_id="c1")
    assert not is_mountpoint(overlay2.home / "c1" / "merged")


def test_a_layer_made_again_by_another_process_mounts_as_made(open_overlay2: OpenGraph) -> None:
    first = open_overlay2()
    _base(first)
    first.create_from_tar("other", None, io.BytesIO(layer_tar({"other": b"o\n"})))
    first.create_rw("c1", "base")
    with first.mounted("c1") as path:
        (path / "mine").write_bytes(b"1")
    # Another process makes c1 again: the same parent but read-only, then read-write on another parent.
    second = open_overlay2()
    second.remove("c1")
    second.create("c1", "base")
    with first.mounted("c1") as path:
        assert (path / "etc" / "motd").read_bytes() == b"hello\n" and not (path / "mine").exists()
        with pytest.raises(OSError) as caught:
            (path / "mine").write_bytes(b"2")
        assert caught.value.errno == errno.EROFS
    second.remove("c1")
    second.create_rw("c1", "other")
    with first.mounted("c1") as path:
        assert sorted(os.listdir(path)) == ["other"]
        (path / "mine").write_bytes(b"3")
