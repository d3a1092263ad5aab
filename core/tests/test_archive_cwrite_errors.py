"""The C tar writer's failures: entries vanishing or shrinking mid-walk, out.write raising, deep trees; no fd leaks."""

from __future__ import annotations

import gc
import io
import os
import resource
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drivebay.archive import WhiteoutFormat, _tarwrite, whiteouts, write_changes_tar, write_tree_tar
from drivebay.archive.tarformat import TarReader
from drivebay.errors import ArchiveIOError
from drivebay.hookspecs.graph import Change, ChangeKind


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def no_fd_leak() -> Iterator[None]:
    """Fails the test if it ends with an fd open that it did not start with.

    Objects of earlier tests are collected first: one finalized mid-test closes an fd it held, which is no
    leak, and only made the sets differ (seen once in a full run).
    """
    gc.collect()
    before = open_fds()
    yield
    assert open_fds() - before == set()


class CallbackOut:
    """An output stream that runs ``action`` once, when the writer first writes out its full buffer."""

    def __init__(self, action: Callable[[], None]) -> None:
        self.data = io.BytesIO()
        self.action: Callable[[], None] | None = action

    def write(self, chunk: memoryview) -> int:
        if self.action is not None:
            action, self.action = self.action, None
            action()
        return self.data.write(chunk)


def big_first_tree(root: Path) -> None:
    # The 2 MiB file fills the 1 MiB buffer while "b" and "c" are listed but not yet written.
    root.mkdir()
    (root / "a-big").write_bytes(b"x" * (2 << 20))
    (root / "b").write_bytes(b"0123456789")
    (root / "c").mkdir()
    (root / "c" / "inner").write_bytes(b"inner")


def shrink(path: Path) -> None:
    os.truncate(path, 3)


def test_the_c_writer_uses_whiteouts_names() -> None:
    assert _tarwrite.WHITEOUT_PREFIX == whiteouts.WHITEOUT_PREFIX
    assert _tarwrite.OPAQUE_MARKER == whiteouts.OPAQUE_MARKER
    assert _tarwrite.AUFS_META_PREFIX == whiteouts.AUFS_META_PREFIX
    assert _tarwrite.OVERLAY_OPAQUE_XATTR == whiteouts.OVERLAY_OPAQUE_XATTR


@pytest.mark.parametrize(
    ("action", "victim", "message"),
    [
        (os.unlink, "b", "cannot read '{}' into the layer tar (No such file or directory)"),
        (shrink, "b", "'{}' shrank while being archived; stop writers to the layer and retry"),
        (shutil.rmtree, "c", "cannot read '{}' into the layer tar (No such file or directory)"),
    ],
    ids=["file-vanishes", "file-shrinks", "directory-vanishes"],
)
def test_an_entry_changing_mid_walk_is_an_archive_io_error_naming_it(
    tmp_path: Path, no_fd_leak: None, action: Callable[[Path], None], victim: str, message: str
) -> None:
    root = tmp_path / "tree"
    big_first_tree(root)
    out = CallbackOut(lambda: action(root / victim))
    with pytest.raises(ArchiveIOError) as info:
        write_tree_tar(out, root, WhiteoutFormat.DELETE)  # type: ignore[arg-type]
    assert str(info.value) == message.format(root / victim)


def test_a_missing_root_is_an_archive_io_error(tmp_path: Path, no_fd_leak: None) -> None:
    with pytest.raises(ArchiveIOError, match=r"cannot read '.*/absent' into the layer tar"):
        write_tree_tar(io.BytesIO(), tmp_path / "absent", WhiteoutFormat.DELETE)


def test_a_missing_changed_path_is_an_archive_io_error(tmp_path: Path, no_fd_leak: None) -> None:
    (tmp_path / "layer").mkdir()
    with pytest.raises(ArchiveIOError) as info:
        write_changes_tar(io.BytesIO(), tmp_path / "layer", [Change("/gone", ChangeKind.ADD)])
    assert str(info.value) == f"changed path '/gone' cannot be read in {tmp_path / 'layer'} (No such file or directory)"


class StreamBroke(Exception):
    pass


def test_out_write_errors_pass_through_unchanged(tmp_path: Path, no_fd_leak: None) -> None:
    root = tmp_path / "tree"
    big_first_tree(root)
    raised = StreamBroke("disk full")

    def fail() -> None:
        raise raised

    with pytest.raises(StreamBroke) as info:
        write_tree_tar(CallbackOut(fail), root, WhiteoutFormat.DELETE)  # type: ignore[arg-type]
    assert info.value is raised
    (tmp_path / "changes").mkdir()
    (tmp_path / "changes" / "f").write_bytes(b"f")
    with pytest.raises(StreamBroke):
        # The changes writer writes out only at the end: the two zero blocks fill nothing, finish flushes.
        write_changes_tar(CallbackOut(fail), tmp_path / "changes", [Change("/f", ChangeKind.ADD)])  # type: ignore[arg-type]


def test_out_write_cannot_call_back_into_the_writer(tmp_path: Path, no_fd_leak: None) -> None:
    root = tmp_path / "tree"
    big_first_tree(root)
    writer: _tarwrite.TarWriter

    def reenter(chunk: memoryview) -> None:
        writer.add_whiteout(b"x")

    writer = _tarwrite.TarWriter(reenter, ())
    with pytest.raises(RuntimeError, match="already writing"):
        writer.write_tree(os.fsencode(root), "delete")


def test_chunks_are_about_a_mebibyte_and_stay_valid(tmp_path: Path, no_fd_leak: None) -> None:
    root = tmp_path / "tree"
    big_first_tree(root)
    chunks: list[bytes] = []
    sizes: list[int] = []

    class Recorder:
        def write(self, chunk: memoryview) -> None:
            sizes.append(len(chunk))
            chunks.append(bytes(chunk))

    write_tree_tar(Recorder(), root, WhiteoutFormat.DELETE)  # type: ignore[arg-type]
    assert sizes[:2] == [1 << 20, 1 << 20]
    whole = io.BytesIO()
    write_tree_tar(whole, root, WhiteoutFormat.DELETE)
    assert b"".join(chunks) == whole.getvalue()


def test_a_tree_deeper_than_the_fd_limit_is_written_whole(tmp_path: Path, no_fd_leak: None) -> None:
    # Room for the writer's first 128 levels of open directories, and a tree deeper than the limit.
    limit = len(open_fds()) + 160
    depth = limit + 100
    root = tmp_path / "tree"
    level = root
    for _ in range(depth):
        level = level / "d"
        level.mkdir(parents=True)
    level = root
    for index in range(depth):
        # A file after each subdirectory: written once the writer is back from the subtree.
        (level / "z").write_bytes(b"%d" % index)
        level = level / "d"
    directories = ["d/" * (index + 1) for index in range(depth)]
    expected = directories + ["d/" * index + "z" for index in range(depth - 1, -1, -1)]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        out = io.BytesIO()
        write_tree_tar(out, root, WhiteoutFormat.DELETE)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    reader = TarReader(io.BytesIO(out.getvalue()))
    names = []
    while (hdr := reader.next()) is not None:
        names.append(hdr.name)
        if hdr.name.endswith("z"):
            assert bytes(reader.read_data(10)) == b"%d" % hdr.name.count("d/")
    assert names == expected
