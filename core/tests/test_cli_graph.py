"""``drivebay graph`` end to end, in subprocesses, as a user or a script runs it."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from cli_helpers import Drivebay, make_drivebay

from drivebay.fs.mounts import is_mountpoint, unmount_all_under
from drivebay.testing.tars import layer_tar

PARENT = layer_tar(
    {
        "etc/": None,
        "etc/hostname": b"box\n",
        "etc/gone.conf": b"bye\n",
        "var/": None,
        "var/cache/": None,
        "var/cache/big": b"x" * 5000,
        "usr/": None,
        "usr/share/": None,
        "usr/share/old": b"old\n",
        "keep": b"keep\n",
    }
)
CHILD = layer_tar(
    {
        "etc/": None,
        "etc/.wh.gone.conf": None,
        ".wh.var": None,
        "usr/": None,
        "usr/share/": None,
        "usr/share/.wh..wh..opq": None,
        "usr/share/new": b"new\n",
        "added": b"added\n",
    }
)


@pytest.fixture
def drivebay(tmp_path: Path) -> Drivebay:
    return make_drivebay(tmp_path)


def tree(view: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(view)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(view.rglob("*"))
    }


def test_apply_with_deletions_then_mount_shows_exactly_the_result(drivebay: Drivebay) -> None:
    assert drivebay.out("graph", "apply", "base", stdin=PARENT).strip() == str(len(b"box\nbye\n") + 5000 + 9)
    assert drivebay.out("graph", "apply", "child", "--parent", "base", stdin=CHILD).strip() == str(len(b"new\nadded\n"))
    view = Path(drivebay.out("graph", "mount", "child").strip())
    assert view.is_absolute()
    assert tree(view) == {
        "added": b"added\n",
        "etc": None,
        "etc/hostname": b"box\n",
        "keep": b"keep\n",
        "usr": None,
        "usr/share": None,
        "usr/share/new": b"new\n",
    }
    drivebay.run("graph", "unmount", "child")
    changes = drivebay.out("graph", "changes", "child").splitlines()
    assert {"A /added", "D /etc/gone.conf", "D /var", "D /usr/share/old", "A /usr/share/new"} <= set(changes)
    assert all(line[:2] in ("A ", "C ", "D ") for line in changes)
    assert drivebay.out("graph", "diff-size", "child").strip() == str(len(b"new\nadded\n"))


def test_diff_twice_gives_the_same_bytes(drivebay: Drivebay, tmp_path: Path) -> None:
    drivebay.run("graph", "apply", "base", stdin=PARENT)
    drivebay.run("graph", "apply", "child", "--parent", "base", stdin=CHILD)
    first = drivebay.run("graph", "diff", "child").stdout
    drivebay.run("graph", "diff", "child", "-o", str(tmp_path / "child.tar"))
    second = (tmp_path / "child.tar").read_bytes()
    assert hashlib.sha256(first).hexdigest() == hashlib.sha256(second).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        names = tar.getnames()
    # vfs keeps no opaque markers, so the naive diff deletes the old entries one by one.
    assert {".wh.var", "etc/.wh.gone.conf", "usr/share/.wh.old", "usr/share/new", "added"} <= set(names)
    # Naming the layer's own parent is the same as the default.
    drivebay.run("graph", "diff", "child", "--parent", "base", "-o", str(tmp_path / "against-base.tar"))
    assert (tmp_path / "against-base.tar").read_bytes() == first


def hostile_tar(case: str, outside: Path) -> bytes:
    """Tars that try to write outside the layer; ``outside`` is the directory they aim at."""
    up = "../" * 12 + str(outside).lstrip("/")
    if case == "dot-dot":
        return layer_tar({"../escaped": b"owned\n"})
    if case == "symlink-then-write":
        return layer_tar({"evil": str(outside), "evil/escaped": b"owned\n"})
    if case == "relative-symlink-then-write":
        return layer_tar({"evil": up, "evil/escaped": b"owned\n"})
    if case == "hardlink-out":
        return layer_tar({"ok": b"ok\n"}, links={"escaped": f"{up}/target"})
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["dot-dot", "symlink-then-write", "relative-symlink-then-write", "hardlink-out"])
def test_hostile_tars_are_refused_and_leave_nothing(drivebay: Drivebay, tmp_path: Path, case: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "target").write_text("secret\n")
    result = drivebay.run("graph", "apply", "hostile", stdin=hostile_tar(case, outside), check=False)
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    assert stderr.count("\n") == 1 and stderr.startswith("drivebay: "), stderr
    assert sorted(p.name for p in outside.iterdir()) == ["target"]
    assert (outside / "target").read_text() == "secret\n"
    assert json.loads(drivebay.out("graph", "ls", "--json")) == []
    assert list((drivebay.root / "vfs" / "dir").iterdir()) == []


def test_usage_errors_exit_2(drivebay: Drivebay) -> None:
    for args in (["graph", "create"], ["graph", "frobnicate", "x"], ["drivers", "--kind", "disk"], []):
        result = drivebay.run(*args, check=False)
        assert result.returncode == 2, (args, result.stderr)
        assert b"usage: drivebay" in result.stderr


def test_errors_are_one_line_exit_1(drivebay: Drivebay) -> None:
    drivebay.run("graph", "create", "base")
    drivebay.run("graph", "create", "child", "--parent", "base")
    for args, needle in (
        (["graph", "rm", "base"], "parent of child"),
        (["graph", "create", "base"], "already exists"),
        (["graph", "mount", "nope"], "layer 'nope' does not exist"),
        (["graph", "create", "x", "--parent", "nope"], "layer 'nope' does not exist"),
        (["--storage-opt", "size", "graph", "ls"], "not KEY=VALUE"),
        (["graph", "apply", "x", "-i", "/nonexistent/layer.tar"], "/nonexistent/layer.tar: No such file"),
    ):
        result = drivebay.run(*args, check=False)
        stderr = result.stderr.decode()
        assert result.returncode == 1, (args, stderr)
        assert stderr.count("\n") == 1 and needle in stderr, (args, stderr)
    bad_id = drivebay.run("graph", "create", "bad/id", check=False)
    assert bad_id.returncode == 2 and bad_id.stderr.decode().count("\n") == 1 and b"'bad/id'" in bad_id.stderr


def test_exists_prints_and_exits(drivebay: Drivebay) -> None:
    drivebay.run("graph", "create", "base", "--rw")
    yes, no = drivebay.run("graph", "exists", "base", check=False), drivebay.run("graph", "exists", "x", check=False)
    assert (yes.returncode, yes.stdout) == (0, b"true\n")
    assert (no.returncode, no.stdout) == (1, b"false\n")
    assert json.loads(drivebay.out("graph", "ls", "--json"))[0] | {"created": 0} == {
        "id": "base", "parent": None, "rw": True, "mounts": 0, "created": 0,
    }
    drivebay.run("graph", "rm", "base")
    assert drivebay.out("graph", "ls").splitlines() == ["ID   PARENT   KIND   MOUNTS"]


def test_debug_prints_each_driver_call_with_its_duration(drivebay: Drivebay) -> None:
    result = drivebay.run("--debug", "graph", "create", "base")
    lines = result.stderr.decode().splitlines()
    assert any(line.startswith("drivebay: graph_create ") and line.endswith(" ms") for line in lines), lines
    assert any(line.startswith("drivebay: graph_init ") for line in lines), lines
    quiet = drivebay.run("graph", "create", "other")
    assert quiet.stderr == b""


def mounts_of(drivebay: Drivebay, layer: str) -> int:
    records = {r["id"]: r for r in json.loads(drivebay.out("graph", "ls", "--json"))}
    return int(records[layer]["mounts"])


@pytest.mark.parametrize("driver", ["vfs", "overlay2"])
def test_mount_refcount_survives_across_processes(tmp_path: Path, driver: str) -> None:
    drivebay = make_drivebay(tmp_path, driver)
    try:
        probe = drivebay.run("drivers", "--kind", "graph", "--json")
        support = {d["name"]: d for d in json.loads(probe.stdout)}
        if not support[driver]["supported"]:
            pytest.skip(f"{driver} is not supported here: {support[driver]['reason']}")
        drivebay.run("graph", "apply", "base", stdin=PARENT)
        drivebay.run("graph", "create", "box", "--parent", "base", "--rw")
        first = drivebay.out("graph", "mount", "box").strip()
        second = drivebay.out("graph", "mount", "box").strip()
        assert first == second
        assert (Path(first) / "etc" / "hostname").read_text() == "box\n"
        assert mounts_of(drivebay, "box") == 2
        mounted = driver != "vfs"
        assert is_mountpoint(Path(first)) == mounted
        drivebay.run("graph", "unmount", "box")
        assert mounts_of(drivebay, "box") == 1
        assert is_mountpoint(Path(first)) == mounted, "one reference is left, so the layer stays mounted"
        assert (Path(first) / "keep").read_text() == "keep\n"
        drivebay.run("graph", "unmount", "box")
        assert mounts_of(drivebay, "box") == 0
        assert not is_mountpoint(Path(first))
        again = drivebay.run("graph", "unmount", "box", check=False)
        assert again.returncode == 1 and b"not mounted" in again.stderr
    finally:
        drivebay.run("graph", "cleanup", check=False)
        unmount_all_under(tmp_path)


def test_cleanup_forgets_every_mount(drivebay: Drivebay) -> None:
    drivebay.run("graph", "create", "a")
    drivebay.run("graph", "mount", "a")
    drivebay.run("graph", "mount", "a")
    drivebay.run("graph", "cleanup")
    assert mounts_of(drivebay, "a") == 0
    drivebay.run("graph", "rm", "a")
