"""Mounts with paths relative to a directory: this thread's working directory only, and Mount descriptions
carried out with the cheapest system call that takes their options."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivebay.fs.mounts import mount_relative, mounts_under, thread_working_directory, unmount_all_under
from drivebay.fs.mountspec import PAGE_SIZE, prepare_mount
from drivebay.hookspecs.graph import Mount


@pytest.fixture
def mount_root(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path`` for overlay mounts; whatever is still mounted below it is unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting overlay needs root")
    try:
        yield tmp_path
    finally:
        unmount_all_under(tmp_path)


def _lowers(parent: Path, names: list[str]) -> list[Path]:
    """One lower directory per name, each holding a file named after it."""
    made = []
    for name in names:
        (parent / name).mkdir(parents=True)
        (parent / name / f"file-{name}").write_text(name)
        made.append(parent / name)
    return made


def _options_shown(target: Path) -> str:
    (entry,) = mounts_under(target)
    return entry.super_options


def test_thread_working_directory_moves_only_this_thread(tmp_path: Path) -> None:
    before = os.getcwd()
    inside = threading.Event()
    seen: dict[str, str] = {}

    def worker() -> None:
        with thread_working_directory(tmp_path):
            seen["inside"] = os.getcwd()
            inside.set()
            finished.wait(10)
        seen["after"] = os.getcwd()

    finished = threading.Event()
    thread = threading.Thread(target=worker)
    thread.start()
    try:
        assert inside.wait(10)
        # While the worker sits in tmp_path, the main thread and the process stay where they were.
        assert os.getcwd() == before
        assert os.readlink("/proc/self/cwd") == before
    finally:
        finished.set()
        thread.join(10)
    assert seen == {"inside": str(tmp_path), "after": before}


def test_thread_working_directory_returns_after_an_error(tmp_path: Path) -> None:
    before = os.getcwd()
    with pytest.raises(RuntimeError), thread_working_directory(tmp_path):
        raise RuntimeError("inside")
    assert os.getcwd() == before


def test_mount_relative_resolves_data_in_the_directory(mount_root: Path) -> None:
    _lowers(mount_root / "layers", ["a", "b"])
    for name in ("upper", "work", "merged"):
        (mount_root / "layers" / name).mkdir()
    before = os.getcwd()
    target = mount_root / "layers" / "merged"
    mount_relative(mount_root / "layers", "overlay", target, "overlay", 0, "lowerdir=a:b,upperdir=upper,workdir=work")
    assert os.getcwd() == before
    assert sorted(os.listdir(target)) == ["file-a", "file-b"]
    assert "lowerdir=a:b," in _options_shown(target)


def _overlay_spec(lowers: list[Path]) -> Mount:
    return Mount("overlay", "overlay", ("ro", "lowerdir=" + ":".join(str(lower) for lower in lowers)))


def test_a_description_that_fits_a_page_mounts_as_given(mount_root: Path) -> None:
    lowers = _lowers(mount_root, ["a", "b"])
    target = mount_root / "merged"
    target.mkdir()
    prepare_mount(_overlay_spec(lowers))(target)
    assert sorted(os.listdir(target)) == ["file-a", "file-b"]
    shown = _options_shown(target)
    assert f"lowerdir={lowers[0]}:{lowers[1]}" in shown and shown.startswith("ro,")


def test_a_deep_description_mounts_with_lowers_relative_to_their_parent(mount_root: Path) -> None:
    parent = mount_root / ("a-directory-name-long-enough-to-push-absolute-paths-past-a-page" * 2)
    lowers = _lowers(parent, [f"l{index:03}" for index in range(100)])
    spec = _overlay_spec(lowers)
    assert len(",".join(spec.options)) > PAGE_SIZE
    target = mount_root / "merged"
    target.mkdir()
    prepare_mount(spec)(target)
    assert len(os.listdir(target)) == 100
    assert "lowerdir=l000:l001:" in _options_shown(target)


def test_a_description_past_a_page_even_relative_mounts_through_the_new_api(mount_root: Path) -> None:
    lowers = _lowers(mount_root / "layers", [f"{index:03}-{'x' * 40}" for index in range(120)])
    spec = _overlay_spec(lowers)
    assert sum(len(lower.name) + 1 for lower in lowers) > PAGE_SIZE
    target = mount_root / "merged"
    target.mkdir()
    prepare_mount(spec)(target)
    assert len(os.listdir(target)) == 120
    assert _options_shown(target).count("lowerdir+=") == 120
