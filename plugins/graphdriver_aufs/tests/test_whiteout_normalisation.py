"""Stray overlay-format whiteouts become aufs ones; nested, opaque and interrupted cases."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from drivebay_graphdriver_aufs.whiteouts import OPAQUE_MARKER, normalise_branch

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a 0/0 char device and trusted xattrs need root")


def _char_whiteout(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))


@needs_root
def test_nested_char_whiteouts_become_wh_files(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    _char_whiteout(tmp_path / "gone")
    _char_whiteout(tmp_path / "a" / "b" / "deep")
    (tmp_path / "a" / "kept").write_text("kept")

    assert normalise_branch(tmp_path) == 2

    assert not (tmp_path / "gone").exists()
    assert (tmp_path / ".wh.gone").is_file()
    assert (tmp_path / "a" / "b" / ".wh.deep").is_file()
    assert (tmp_path / "a" / "kept").read_text() == "kept"


@needs_root
def test_opaque_xattr_becomes_opaque_marker(tmp_path: Path) -> None:
    (tmp_path / "dir" / "inner").mkdir(parents=True)
    os.setxattr(tmp_path / "dir", "trusted.overlay.opaque", b"y")
    os.setxattr(tmp_path / "dir" / "inner", "user.fuseoverlayfs.opaque", b"y")

    assert normalise_branch(tmp_path) == 2

    assert (tmp_path / "dir" / OPAQUE_MARKER).is_file()
    assert (tmp_path / "dir" / "inner" / OPAQUE_MARKER).is_file()
    assert "trusted.overlay.opaque" not in os.listxattr(tmp_path / "dir")


@needs_root
def test_normalising_twice_after_an_interruption_finishes_the_job(tmp_path: Path) -> None:
    """A crash between two conversions leaves a mix; the next pass converts the rest and changes nothing else."""
    _char_whiteout(tmp_path / "first")
    (tmp_path / ".wh.already").touch()
    _char_whiteout(tmp_path / "second")

    assert normalise_branch(tmp_path) == 2
    assert normalise_branch(tmp_path) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [".wh.already", ".wh.first", ".wh.second"]


@needs_root
def test_overlong_name_cannot_be_whited_out_in_aufs_form(tmp_path: Path) -> None:
    _char_whiteout(tmp_path / ("n" * 252))
    with pytest.raises(OSError, match="longer than 251 bytes"):
        normalise_branch(tmp_path)
