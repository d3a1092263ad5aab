"""The snapshot service end to end through a real gRPC client on a unix socket, for every graph driver."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("grpc", reason="grpcio is not installed: pip install 'drivebay[snapshotter]'")

import grpc
from google.protobuf import field_mask_pb2
from snapshotter_fixtures import Served, driver_root, open_graph, serve, short_tempdir

from drivebay.snapshotter.proto import snapshots_pb2 as pb
from drivebay.snapshotter.snapshots import LAYER_PREFIX


def code_of(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as raised:
        call()  # type: ignore[operator]
    return raised.value.code()


def test_prepare_commit_view_remove_keep_keys_kinds_and_parents(served: Served) -> None:
    stub = served.stub
    base = stub.Prepare(pb.PrepareSnapshotRequest(key="default/1/extract base", labels={"a": "b"}))
    assert [m.options[-1] for m in base.mounts] == ["rw"]
    stub.Commit(pb.CommitSnapshotRequest(key="default/1/extract base", name="default/2/sha256:base",
                                         labels={"containerd.io/snapshot/gc": "x"}))
    active = stub.Prepare(pb.PrepareSnapshotRequest(key="default/3/t2", parent="default/2/sha256:base"))
    view = stub.View(pb.ViewSnapshotRequest(key="default/4/view", parent="default/2/sha256:base"))

    assert "ro" in view.mounts[0].options
    assert "ro" not in active.mounts[0].options
    assert stub.Mounts(pb.MountsRequest(key="default/3/t2")).mounts == active.mounts

    infos = {i.name: i for r in stub.List(pb.ListSnapshotsRequest()) for i in r.info}
    assert {k: (i.kind, i.parent) for k, i in infos.items()} == {
        "default/2/sha256:base": (pb.COMMITTED, ""),
        "default/3/t2": (pb.ACTIVE, "default/2/sha256:base"),
        "default/4/view": (pb.VIEW, "default/2/sha256:base"),
    }
    committed = stub.Stat(pb.StatSnapshotRequest(key="default/2/sha256:base")).info
    assert dict(committed.labels) == {"containerd.io/snapshot/gc": "x"}

    for key in ("default/3/t2", "default/4/view", "default/2/sha256:base"):
        stub.Remove(pb.RemoveSnapshotRequest(key=key))
    assert [i for r in stub.List(pb.ListSnapshotsRequest()) for i in r.info] == []
    assert served.graph.layers() == []


def test_errors_carry_the_codes_containerd_expects(served: Served) -> None:
    stub = served.stub
    stub.Prepare(pb.PrepareSnapshotRequest(key="a"))
    assert code_of(lambda: stub.Prepare(pb.PrepareSnapshotRequest(key="a"))) == grpc.StatusCode.ALREADY_EXISTS
    assert code_of(lambda: stub.Stat(pb.StatSnapshotRequest(key="nope"))) == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: stub.Prepare(pb.PrepareSnapshotRequest(key="b", parent="nope"))) == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: stub.Prepare(pb.PrepareSnapshotRequest(key="b", parent="a"))) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    stub.Commit(pb.CommitSnapshotRequest(key="a", name="c"))
    assert code_of(lambda: stub.Commit(pb.CommitSnapshotRequest(key="c", name="d"))) == (
        grpc.StatusCode.FAILED_PRECONDITION
    )
    assert code_of(lambda: stub.Mounts(pb.MountsRequest(key="c"))) == grpc.StatusCode.FAILED_PRECONDITION
    stub.Prepare(pb.PrepareSnapshotRequest(key="e", parent="c"))
    assert code_of(lambda: stub.Commit(pb.CommitSnapshotRequest(key="e", name="c"))) == grpc.StatusCode.ALREADY_EXISTS
    assert code_of(lambda: stub.Remove(pb.RemoveSnapshotRequest(key="c"))) == grpc.StatusCode.FAILED_PRECONDITION
    assert code_of(lambda: stub.Remove(pb.RemoveSnapshotRequest(key="a"))) == grpc.StatusCode.NOT_FOUND
    bad_field = pb.UpdateSnapshotRequest(info=pb.Info(name="c"), update_mask=field_mask_pb2.FieldMask(paths=["parent"]))
    assert code_of(lambda: stub.Update(bad_field)) == grpc.StatusCode.INVALID_ARGUMENT
    # The failed calls changed nothing.
    assert sorted(i.name for r in stub.List(pb.ListSnapshotsRequest()) for i in r.info) == ["c", "e"]


def test_update_sets_and_deletes_labels_like_containerd(served: Served) -> None:
    stub = served.stub
    stub.Prepare(pb.PrepareSnapshotRequest(key="k", labels={"keep": "1", "drop": "2"}))
    before = stub.Stat(pb.StatSnapshotRequest(key="k")).info

    def update(labels: dict[str, str], paths: list[str]) -> pb.Info:
        request = pb.UpdateSnapshotRequest(info=pb.Info(name="k", labels=labels),
                                           update_mask=field_mask_pb2.FieldMask(paths=paths))
        info: pb.Info = stub.Update(request).info
        return info

    assert dict(update({"new": "3"}, ["labels.new", "labels.drop"]).labels) == {"keep": "1", "new": "3"}
    assert dict(update({"only": "4"}, ["labels"]).labels) == {"only": "4"}
    info = update({"all": "5"}, [])
    assert dict(info.labels) == {"all": "5"}
    assert info.created_at == before.created_at
    assert info.updated_at.ToNanoseconds() > before.updated_at.ToNanoseconds()


def test_list_filters(served: Served) -> None:
    stub = served.stub
    stub.Prepare(pb.PrepareSnapshotRequest(key="x/1", labels={"containerd.io/gc.root": "yes"}))
    stub.Commit(pb.CommitSnapshotRequest(key="x/1", name="x/c", labels={"containerd.io/snapshot.ref": "sha"}))
    stub.Prepare(pb.PrepareSnapshotRequest(key="x/2", parent="x/c"))

    def names(*filters: str) -> list[str]:
        return sorted(i.name for r in stub.List(pb.ListSnapshotsRequest(filters=list(filters))) for i in r.info)

    assert names() == ["x/2", "x/c"]
    assert names("kind==active") == ["x/2"]
    assert names('labels."containerd.io/snapshot.ref"==sha') == ["x/c"]
    assert names('labels."containerd.io/snapshot.ref"') == ["x/c"]
    assert names("parent==x/c,kind==active") == ["x/2"]
    assert names("name~=^x/[0-9]$", "kind==committed") == ["x/2", "x/c"]
    assert names("name!=x/c") == ["x/2"]
    assert names("parent==") == ["x/c"]
    assert code_of(lambda: names("==x")) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: names("name~=(")) == grpc.StatusCode.INVALID_ARGUMENT


def test_usage_counts_what_the_snapshot_adds_and_is_fixed_at_commit(served: Served) -> None:
    stub = served.stub
    stub.Prepare(pb.PrepareSnapshotRequest(key="u"))
    layer = served.snapshotter.store.get("u").layer
    with served.graph.mounted(layer) as root:
        (root / "big").write_bytes(b"x" * 100_000)
        (root / "dir").mkdir()
        (root / "dir" / "small").write_bytes(b"y" * 10)
    usage = stub.Usage(pb.UsageRequest(key="u"))
    assert (usage.size, usage.inodes) == (100_010, 3)
    stub.Commit(pb.CommitSnapshotRequest(key="u", name="uc"))
    committed = stub.Usage(pb.UsageRequest(key="uc"))
    assert (committed.size, committed.inodes) == (100_010, 3)
    stub.View(pb.ViewSnapshotRequest(key="uv", parent="uc"))
    assert stub.Usage(pb.UsageRequest(key="uv")).size == 0


def test_state_survives_a_restart_and_cleanup_removes_only_orphans(served: Served) -> None:
    stub = served.stub
    stub.Prepare(pb.PrepareSnapshotRequest(key="p", labels={"l": "v"}))
    stub.Commit(pb.CommitSnapshotRequest(key="p", name="c", labels={"l": "v"}))
    # An orphan as a crash between creating the layer and recording the snapshot leaves it,
    # and a layer someone else made in the same root.
    served.graph.create(f"{LAYER_PREFIX}orphan")
    served.graph.create(f"{LAYER_PREFIX}orphan-child", f"{LAYER_PREFIX}orphan")
    served.graph.create("not-ours")

    sockets = short_tempdir("dbsock-")
    try:
        with serve(served.name, served.root, sockets / "again.sock") as again:
            info = again.stub.Stat(pb.StatSnapshotRequest(key="c")).info
            assert (info.kind, dict(info.labels)) == (pb.COMMITTED, {"l": "v"})
            again.stub.Cleanup(pb.CleanupRequest())
            remaining = set(again.graph.layers())
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    assert remaining == {served.snapshotter.store.get("c").layer, "not-ours"}


def test_cli_serves_until_sigterm_and_removes_its_socket() -> None:
    with driver_root("vfs") as root:
        sockets = short_tempdir("dbsock-")
        socket = sockets / "cli.sock"
        process = subprocess.Popen(
            [sys.executable, "-m", "drivebay.cli.main", "--root", str(root), "snapshotter", "serve",
             "--driver", "vfs", "--socket", str(socket)],
            stderr=subprocess.PIPE, text=True,
        )
        try:
            assert process.stderr is not None
            assert "serving on" in process.stderr.readline()
            channel = grpc.insecure_channel(f"unix://{socket}")
            from drivebay.snapshotter.proto import snapshots_pb2_grpc

            stub = snapshots_pb2_grpc.SnapshotsStub(channel)
            stub.Prepare(pb.PrepareSnapshotRequest(key="cli/1"))
            assert [i.name for r in stub.List(pb.ListSnapshotsRequest()) for i in r.info] == ["cli/1"]
            channel.close()
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
            assert not socket.exists()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            shutil.rmtree(sockets, ignore_errors=True)
        graph = open_graph("vfs", root)
        assert len(graph.layers()) == 1 and graph.layers()[0].startswith(LAYER_PREFIX)


def test_serve_refuses_a_socket_path_that_is_a_file(tmp_path: Path) -> None:
    with driver_root("vfs") as root:
        taken = tmp_path / "file"
        taken.write_text("mine")
        result = subprocess.run(
            [sys.executable, "-m", "drivebay.cli.main", "--root", str(root), "snapshotter", "serve",
             "--driver", "vfs", "--socket", str(taken)],
            capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 1
        assert "is not a socket" in result.stderr
        assert taken.read_text() == "mine"
