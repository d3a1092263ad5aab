"""Deep stacks: moby's 128 through one mount(2), 500 lowers through the new mount API, clear failures past it."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from drivebay.errors import DepthLimitExceeded, MountError
from drivebay.facades.graph import GraphDriver
from drivebay.fs.mounts import is_mountpoint, mounts_under, unmount
from drivebay.testing.graphs import OpenGraph
from drivebay.testing.tars import layer_tar
from drivebay_graphdriver_overlay2.mounting import PAGE_SIZE, KernelOverlay, OverlayStack

MAX = 500


def _hook_chain(driver: GraphDriver, depth: int, read_only_top: bool = True) -> str:
    """A chain of ``depth`` layers made by the driver's hooks alone (no registry), each holding one file."""
    hook = driver.loaded.hook
    parent = None
    for level in range(1, depth + 1):
        layer_id = f"l{level}"
        if level < depth or read_only_top:
            hook.graph_create(layer_id=layer_id, parent=parent, storage_opts={})
        else:
            hook.graph_create_rw(layer_id=layer_id, parent=parent, storage_opts={})
        (driver.home / layer_id / "diff" / f"file{level}").write_text(str(level))
        parent = layer_id
    assert parent is not None
    return parent


def test_500_lowers_mount_and_show_the_bottom_layer(open_overlay2: OpenGraph) -> None:
    driver = open_overlay2()
    top = _hook_chain(driver, MAX)
    # A read-only layer stacks its own diff too: 500 lower directories in one overlay.
    assert len((driver.home / top / "lower").read_text().split(":")) == MAX - 1
    path = driver.loaded.hook.graph_get(layer_id=top)
    try:
        assert (path / "file1").read_text() == "1"
        assert (path / f"file{MAX}").read_text() == str(MAX)
        assert len(os.listdir(path)) == MAX
        # Past a page of options, each lower went in by its own fsconfig call, with its path relative to the home.
        (entry,) = mounts_under(path)
        assert entry.super_options.count("lowerdir+=l/") == MAX - 1
    finally:
        driver.loaded.hook.graph_put(layer_id=top)
    assert not is_mountpoint(path)


def test_kernel_refusal_past_500_is_a_clear_mount_error(open_overlay2: OpenGraph) -> None:
    driver = open_overlay2()
    # Bypassing core's depth check, as a driver-level caller could: the kernel itself refuses.
    top = _hook_chain(driver, MAX + 1)
    with pytest.raises(MountError) as caught:
        driver.loaded.hook.graph_get(layer_id=top)
    message = str(caught.value)
    assert f"layer '{top}' ({MAX + 1} lower layers)" in message
    assert "too many lower directories, limit is 500" in message
    assert not is_mountpoint(driver.home / top / "merged")


@pytest.mark.slow
def test_500_deep_chain_through_the_facade_and_501_refused(open_overlay2: OpenGraph) -> None:
    driver = open_overlay2()
    parent = None
    for level in range(1, MAX + 1):
        driver.create_from_tar(f"l{level}", parent, io.BytesIO(layer_tar({f"file{level}": str(level).encode()})))
        parent = f"l{level}"
    assert driver.depth(f"l{MAX}") == MAX
    with driver.mounted(f"l{MAX}") as path:
        assert (path / "file1").read_text() == "1"
        assert (path / f"file{MAX}").read_text() == str(MAX)
    with pytest.raises(DepthLimitExceeded) as caught:
        driver.create_rw("too-deep", f"l{MAX}")
    assert "501 layers deep" in str(caught.value) and "at most 500" in str(caught.value)
    assert not driver.exists("too-deep")


def test_moby_128_mount_through_one_mount_2_with_relative_paths(open_overlay2: OpenGraph) -> None:
    driver = open_overlay2()
    top = _hook_chain(driver, 128, read_only_top=False)
    stack = OverlayStack(
        driver.home, tuple((driver.home / top / "lower").read_text().split(":")), f"{top}/diff", f"{top}/work"
    )
    assert len(",".join(stack.options())) > PAGE_SIZE, "absolute paths would not fit one page"
    assert len(stack.relative_data) < PAGE_SIZE
    cwd = os.getcwd()
    target = driver.loaded.hook.graph_get(layer_id=top)
    try:
        assert os.getcwd() == cwd
        # mount(2) shows its one lowerdir= option as given: the short links, relative to the home.
        (entry,) = mounts_under(target)
        assert f"lowerdir={':'.join(stack.lowers)}," in entry.super_options
        assert "lowerdir+=" not in entry.super_options
        assert (target / "file1").read_text() == "1"
        (target / "new").write_text("through mount(2)")
        assert (driver.home / top / "diff" / "new").read_text() == "through mount(2)"
    finally:
        driver.loaded.hook.graph_put(layer_id=top)


def test_without_lowerdir_append_128_still_mount(open_overlay2: OpenGraph) -> None:
    driver = open_overlay2()
    top = _hook_chain(driver, 128, read_only_top=False)
    legacy = KernelOverlay(userxattr=False)
    legacy.new_api = False
    stack = OverlayStack(
        driver.home, tuple((driver.home / top / "lower").read_text().split(":")), f"{top}/diff", f"{top}/work"
    )
    target = driver.home / top / "merged"
    legacy.mount(stack, target)
    try:
        assert (target / "file1").read_text() == "1"
    finally:
        unmount(target)


def test_mount_2_fallback_refuses_data_over_a_page(open_overlay2: OpenGraph) -> None:
    driver = open_overlay2()
    top = _hook_chain(driver, 200)
    legacy = KernelOverlay(userxattr=False)
    legacy.new_api = False
    lowers = (f"{top}/diff", *(driver.home / top / "lower").read_text().split(":"))
    with pytest.raises(MountError, match=r"over the \d+-byte page .*200 lowers.*lowerdir\+"):
        legacy.mount(OverlayStack(driver.home, lowers), driver.home / top / "merged")
    assert not is_mountpoint(Path(driver.home / top / "merged"))
