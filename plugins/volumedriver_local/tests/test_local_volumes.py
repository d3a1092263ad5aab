"""Local volumes: Docker's layout, real mounts made at the first use and undone after the last."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from volume_fixtures import needs_root

from drivebay.errors import (
    InvalidConfig,
    MountError,
    QuotaNotSupported,
    UsageError,
    VolumeExists,
    VolumeInUse,
    VolumeNotFound,
    VolumeNotMounted,
)
from drivebay.facades.volume import VolumeDriver
from drivebay.fs import mounts

TMPFS = {"type": "tmpfs", "device": "tmpfs", "o": "size=64m,uid=1000"}


def _entry(path: Path) -> mounts.MountEntry | None:
    return next((e for e in mounts.mount_table() if e.mount_point == Path(os.path.realpath(path))), None)


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "volumes").iterdir())


def test_hook_volume_capabilities_are_local_scope(driver: VolumeDriver) -> None:
    assert driver.capabilities.scope == "local"
    assert set(driver.capabilities.options) == {"type", "device", "o"}


def test_hook_volume_probe_accepts_any_host(driver: VolumeDriver, root: Path) -> None:
    assert driver.loaded.hook.volume_probe(root=root) is None


def test_hook_volume_init_makes_the_volumes_dir_and_clears_dead_staging(
    root: Path, open_driver: Callable[[], VolumeDriver]
) -> None:
    stale = root / "volumes" / ".creating-half-999999999"
    stale.mkdir(parents=True)
    open_driver()
    assert (root / "volumes").is_dir() and not stale.exists()


def test_hook_volume_create_plain_directory_in_docker_layout(driver: VolumeDriver, root: Path) -> None:
    view = driver.create("data")
    assert view.volume.mountpoint == root / "volumes" / "data" / "_data"
    assert view.volume.mountpoint.is_dir()
    assert not (root / "volumes" / "data" / "opts.json").exists()
    assert view.volume.options == {} and view.users == {}
    with pytest.raises(VolumeExists, match="'data' already exists"):
        driver.create("data")


def test_options_are_stored_as_docker_opts_json(driver: VolumeDriver, root: Path) -> None:
    driver.create("cache", TMPFS)
    stored = json.loads((root / "volumes" / "cache" / "opts.json").read_text())
    assert stored == {
        "MountType": "tmpfs",
        "MountOpts": "size=64m,uid=1000",
        "MountDevice": "tmpfs",
        "Quota": {"Size": 0},
    }
    assert driver.inspect("cache").volume.options == TMPFS


@pytest.mark.parametrize("name", ["a", "-lead", "has/slash", "sp ace", "", ".hidden"])
def test_invalid_names_are_refused_and_nothing_is_made(driver: VolumeDriver, root: Path, name: str) -> None:
    with pytest.raises(UsageError, match="invalid volume name"):
        driver.create(name)
    assert _leftovers(root) == []


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"colour": "blue"}, InvalidConfig, "invalid volume option 'colour'"),
        ({"type": "tmpfs"}, InvalidConfig, "'type' needs option 'device'"),
        ({"o": "size=1m", "device": "tmpfs"}, InvalidConfig, "'device' needs option 'type'"),
        ({"type": "bogusfs", "device": "x"}, InvalidConfig, "'bogusfs' is not a filesystem"),
        ({"type": "none", "device": "/nonexistent/dir", "o": "bind"}, InvalidConfig, "does not exist"),
        ({"type": "ext4", "device": "/nonexistent.img", "o": "loop"}, InvalidConfig, "not an image file"),
        ({"size": "10m"}, QuotaNotSupported, "project quotas"),
    ],
)
def test_bad_options_are_refused_and_nothing_is_made(
    driver: VolumeDriver, root: Path, options: dict[str, str], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        driver.create("bad", options)
    assert _leftovers(root) == []


def test_hook_volume_list_sorts_by_name_and_skips_staging(driver: VolumeDriver, root: Path) -> None:
    driver.create("b-vol")
    driver.create("a-vol", TMPFS)
    (root / "volumes" / ".creating-c-vol-1").mkdir()
    assert [v.volume.name for v in driver.list()] == ["a-vol", "b-vol"]


def test_hook_volume_get_describes_a_volume(driver: VolumeDriver) -> None:
    driver.create("a-vol", TMPFS)
    shown = driver.inspect("a-vol").to_json()
    assert shown["Driver"] == "local" and shown["Scope"] == "local" and shown["Options"] == TMPFS
    assert str(shown["CreatedAt"]).endswith("Z") and shown["Users"] == {}
    with pytest.raises(VolumeNotFound, match="no volume named 'ghost'"):
        driver.inspect("ghost")


def test_hook_volume_path_is_the_data_dir(driver: VolumeDriver, root: Path) -> None:
    driver.create("data")
    assert driver.path("data") == root / "volumes" / "data" / "_data"
    with pytest.raises(VolumeNotFound):
        driver.path("ghost")


def test_plain_volume_mount_is_refcounted_without_a_mount(driver: VolumeDriver) -> None:
    driver.create("data")
    path = driver.mount("data", "c1")
    (path / "file").write_text("kept")
    assert driver.mount("data", "c2") == path
    assert driver.inspect("data").users == {"c1": 1, "c2": 1}
    driver.unmount("data", "c1")
    driver.unmount("data", "c2")
    assert (path / "file").read_text() == "kept"
    with pytest.raises(VolumeNotMounted, match="not mounted by 'c1'"):
        driver.unmount("data", "c1")


@needs_root
def test_hook_volume_mount_tmpfs_first_use_mounts_last_unmounts(
    driver: VolumeDriver, open_driver: Callable[[], VolumeDriver]
) -> None:
    driver.create("cache", TMPFS)
    path = driver.mount("cache", "web")
    entry = _entry(path)
    assert entry is not None and entry.fstype == "tmpfs" and "size=65536k" in entry.super_options
    assert path.stat().st_uid == 1000
    other_process = open_driver()  # refcounts live in drivebay.db, shared by processes
    assert other_process.mount("cache", "db") == path
    assert other_process.inspect("cache").users == {"db": 1, "web": 1}
    assert driver.inspect("cache").volume.status["mounted"] == "true"
    driver.unmount("cache", "web")
    assert _entry(path) is not None
    other_process.unmount("cache", "db")
    assert _entry(path) is None


@needs_root
def test_hook_volume_unmount_counts_repeated_mounts_by_one_caller(driver: VolumeDriver) -> None:
    driver.create("cache", TMPFS)
    path = driver.mount("cache", "web")
    driver.mount("cache", "web")
    driver.unmount("cache", "web")
    assert _entry(path) is not None
    driver.unmount("cache", "web")
    assert _entry(path) is None


@needs_root
def test_hook_volume_remove_refuses_while_in_use_unless_forced(driver: VolumeDriver, root: Path) -> None:
    driver.create("cache", TMPFS)
    path = driver.mount("cache", "web")
    driver.mount("cache", "db")
    with pytest.raises(VolumeInUse, match="in use by db, web"):
        driver.remove("cache")
    assert _entry(path) is not None
    driver.remove("cache", force=True)
    assert _entry(path) is None and _leftovers(root) == []
    with pytest.raises(VolumeNotFound):
        driver.remove("cache")


def _loop_backing(image: Path) -> list[str]:
    out = subprocess.run(["losetup", "-j", str(image)], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line.strip()]


needs_mkfs_ext4 = pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="mkfs.ext4 is not installed")


@needs_root
@needs_mkfs_ext4
def test_loop_mounted_ext4_image(driver: VolumeDriver, tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    with open(image, "wb") as f:
        f.truncate(32 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    driver.create("disk", {"type": "ext4", "device": str(image), "o": "loop"})
    path = driver.mount("disk", "web")
    entry = _entry(path)
    assert entry is not None and entry.fstype == "ext4" and entry.source.startswith("/dev/loop")
    (path / "persisted").write_text("on the image")
    driver.unmount("disk", "web")
    assert _entry(path) is None and not (path / "persisted").exists()
    assert _loop_backing(image) == [], "the loop device must go away with the mount"
    path = driver.mount("disk", "web")
    assert (path / "persisted").read_text() == "on the image"
    driver.unmount("disk", "web")


@needs_root
def test_unmountable_device_fails_cleanly(driver: VolumeDriver, tmp_path: Path) -> None:
    image = tmp_path / "zeros.img"
    with open(image, "wb") as f:
        f.truncate(8 << 20)
    driver.create("broken", {"type": "ext4", "device": str(image), "o": "loop"})
    with pytest.raises(MountError, match="volume 'broken' cannot be mounted"):
        driver.mount("broken", "web")
    assert driver.inspect("broken").users == {}
    assert _entry(driver.path("broken")) is None
    assert _loop_backing(image) == []


@needs_root
def test_bind_of_an_existing_directory_and_read_only(driver: VolumeDriver, tmp_path: Path, root: Path) -> None:
    source = tmp_path / "existing"
    source.mkdir()
    (source / "hello").write_text("from the host")
    driver.create("shared", {"type": "none", "o": "bind", "device": str(source)})
    driver.create("readonly", {"type": "none", "o": "bind,ro", "device": str(source)})
    path = driver.mount("shared", "web")
    assert (path / "hello").read_text() == "from the host"
    (path / "written").write_text("through the volume")
    assert (source / "written").exists()
    ro = driver.mount("readonly", "web")
    with pytest.raises(OSError, match="Read-only file system"):
        (ro / "nope").write_text("x")
    driver.remove("shared", force=True)
    driver.remove("readonly", force=True)
    assert sorted(p.name for p in source.iterdir()) == ["hello", "written"], "removal must not touch the source"
    assert _leftovers(root) == []
