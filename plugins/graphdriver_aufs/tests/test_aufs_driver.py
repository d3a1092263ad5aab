"""The aufs driver through core's facade, on this host's mount path (fuse-overlayfs here)."""

from __future__ import annotations

import errno
import io
import os
import shutil

import pytest

from drivebay.errors import QuotaNotSupported
from drivebay.facades.graph import GraphDriver
from drivebay.fs.mounts import is_mountpoint
from drivebay.testing.tars import layer_tar, tar_names
from drivebay_graphdriver_aufs.mountpaths import kernel_aufs_reason


def _tar_names(driver: GraphDriver, layer_id: str) -> list[str]:
    out = io.BytesIO()
    driver.diff(layer_id, out)
    return tar_names(out.getvalue())


@pytest.fixture
def base(aufs: GraphDriver) -> str:
    aufs.create_from_tar(
        "base",
        None,
        io.BytesIO(layer_tar({"etc/": None, "etc/motd": b"hi\n", "etc/keep": b"k\n", "dir/": None, "dir/old": b"o\n"})),
    )
    return "base"


def test_layout_follows_moby(aufs: GraphDriver, base: str) -> None:
    aufs.create_rw("c1", base)
    home = aufs.home
    assert (home / "layers" / "c1").read_text() == "base\n"
    assert (home / "layers" / "base").read_text() == ""
    assert (home / "diff" / "base" / "etc" / "motd").read_text() == "hi\n"
    assert (home / "mnt" / "c1").is_dir()


def test_container_changes_are_stored_as_aufs_whiteouts(aufs: GraphDriver, base: str) -> None:
    aufs.create_rw("c1", base)
    with aufs.mounted("c1") as view:
        assert is_mountpoint(view)
        assert (view / "etc" / "motd").read_text() == "hi\n"
        (view / "etc" / "motd").unlink()
        shutil.rmtree(view / "dir")
        (view / "dir").mkdir()
        (view / "dir" / "new").write_text("n\n")
    branch = aufs.home / "diff" / "c1"
    assert (branch / "etc" / ".wh.motd").is_file()
    assert (branch / "dir" / ".wh..wh..opq").is_file()
    assert not any(
        os.major(p.lstat().st_rdev) == 0 and p.is_char_device() for p in branch.rglob("*")
    ), "no overlay-format whiteout may stay in an aufs branch"
    names = _tar_names(aufs, "c1")
    assert "etc/.wh.motd" in names
    assert "dir/.wh..wh..opq" in names
    assert [str(c) for c in aufs.changes("c1")] == ["C /dir", "A /dir/new", "D /dir/old", "C /etc", "D /etc/motd"]


def test_native_changes_match_the_naive_comparison(aufs: GraphDriver, base: str) -> None:
    aufs.create_rw("c1", base)
    with aufs.mounted("c1") as view:
        (view / "etc" / "keep").write_text("changed\n")
        (view / "etc" / "added").write_text("a\n")
        os.chmod(view / "dir" / "old", 0o600)
    assert aufs.changes("c1") == aufs.naive_changes("c1", base)


def test_directory_from_a_lower_branch_moves_by_copying(aufs: GraphDriver, base: str) -> None:
    """fuse-overlayfs refuses rename(2) of a lower directory with EXDEV; mv-style tools copy instead."""
    aufs.create_rw("c1", base)
    with aufs.mounted("c1") as view:
        try:
            os.rename(view / "dir", view / "moved")
        except OSError as exc:
            assert exc.errno == errno.EXDEV
            shutil.move(view / "dir", view / "moved")
        assert (view / "moved" / "old").read_text() == "o\n"
        assert not (view / "dir").exists()
    assert "D /dir" in [str(c) for c in aufs.changes("c1")]


def test_image_layers_mount_read_only(aufs: GraphDriver, base: str) -> None:
    aufs.create_from_tar("l2", base, io.BytesIO(layer_tar({"etc/": None, "etc/l2": b"2\n"})))
    with aufs.mounted("l2") as view:
        assert (view / "etc" / "l2").read_text() == "2\n"
        with pytest.raises(OSError):
            (view / "etc" / "new").write_text("x")


def test_crash_while_mounted_is_settled_at_next_start(aufs: GraphDriver, base: str) -> None:
    aufs.create_rw("c1", base)
    aufs.get("c1")
    os.mknod(aufs.home / "diff" / "c1" / "stray", 0o020000, os.makedev(0, 0))
    aufs.loaded.hook.graph_cleanup()  # as if the process died and the mount was lost
    aufs.loaded.hook.graph_init(home=aufs.home, options={})
    assert (aufs.home / "diff" / "c1" / ".wh.stray").is_file()
    assert not (aufs.home / "dirty" / "c1").exists()


def test_size_is_refused_with_what_would_support_it(aufs: GraphDriver) -> None:
    with pytest.raises(QuotaNotSupported, match="overlay2 or btrfs"):
        aufs.create("q", None, {"size": "10M"})


def test_status_names_the_mount_path(aufs: GraphDriver) -> None:
    status = dict(aufs.status())
    if kernel_aufs_reason() is None:
        assert status["Mount Path"] == "kernel aufs module"
    else:
        assert "fuse-overlayfs" in status["Mount Path"]


def test_kernel_aufs_path(aufs: GraphDriver, base: str) -> None:
    reason = kernel_aufs_reason()
    if reason is not None:
        pytest.skip(f"kernel aufs path not testable here: {reason}")
    aufs.create_rw("c1", base)
    with aufs.mounted("c1") as view:
        (view / "etc" / "motd").unlink()
    assert (aufs.home / "diff" / "c1" / "etc" / ".wh.motd").is_file()
