"""The gRPC face of :class:`~drivebay.snapshotter.snapshots.Snapshotter`, served on a unix socket.

containerd turns status codes back into its errdefs, and its unpacker and
garbage collector branch on them, so each drivebay error maps to the code
containerd's own snapshotters return for the same case.
"""

from __future__ import annotations

import logging
import os
import signal
import stat
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent import futures
from pathlib import Path
from typing import NoReturn, TypeVar

import grpc
from google.protobuf import empty_pb2, timestamp_pb2

from drivebay.errors import (
    DepthLimitExceeded,
    DrivebayError,
    InvalidSnapshotRequest,
    LayerExists,
    LayerInUse,
    LayerNotFound,
    MountError,
    SnapshotExists,
    SnapshotNotFound,
    SnapshotStateError,
)
from drivebay.hookspecs.graph import Mount
from drivebay.snapshotter.proto import mount_pb2, snapshots_pb2, snapshots_pb2_grpc
from drivebay.snapshotter.snapshots import Snapshotter
from drivebay.snapshotter.store import Snapshot

STATUS_CODES: tuple[tuple[type[DrivebayError], grpc.StatusCode], ...] = (
    (SnapshotNotFound, grpc.StatusCode.NOT_FOUND),
    (LayerNotFound, grpc.StatusCode.NOT_FOUND),
    (SnapshotExists, grpc.StatusCode.ALREADY_EXISTS),
    (LayerExists, grpc.StatusCode.ALREADY_EXISTS),
    (SnapshotStateError, grpc.StatusCode.FAILED_PRECONDITION),
    (LayerInUse, grpc.StatusCode.FAILED_PRECONDITION),
    (DepthLimitExceeded, grpc.StatusCode.FAILED_PRECONDITION),
    (InvalidSnapshotRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (MountError, grpc.StatusCode.INTERNAL),
)
LIST_BATCH = 100
"""Snapshots per List message, as containerd's own service sends them."""

T = TypeVar("T")
log = logging.getLogger(__name__)


def status_code(error: DrivebayError) -> grpc.StatusCode:
    return next((code for cls, code in STATUS_CODES if isinstance(error, cls)), grpc.StatusCode.UNKNOWN)


def _abort(context: grpc.ServicerContext, error: DrivebayError) -> NoReturn:
    code = status_code(error)
    # containerd logs only some of the errors it gets back; this says which call failed and why.
    log.info("%s: %s %s", context.peer(), code.name, error)
    context.abort(code, str(error))
    raise AssertionError("grpc's abort returned")  # abort always raises; this tells the type checker


def _call(context: grpc.ServicerContext, work: Callable[[], T]) -> T:
    try:
        return work()
    except DrivebayError as exc:
        _abort(context, exc)


def _mounts(mounts: tuple[Mount, ...]) -> list[mount_pb2.Mount]:
    return [mount_pb2.Mount(type=m.type, source=m.source, options=list(m.options)) for m in mounts]


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(round(seconds * 1e9))
    return stamp


def _info(snapshot: Snapshot) -> snapshots_pb2.Info:
    return snapshots_pb2.Info(
        name=snapshot.key,
        parent=snapshot.parent or "",
        kind=snapshot.kind.value,  # type: ignore[arg-type]  # the enum's values are the protocol's numbers
        created_at=_timestamp(snapshot.created),
        updated_at=_timestamp(snapshot.updated),
        labels=snapshot.labels,
    )


class SnapshotsService(snapshots_pb2_grpc.SnapshotsServicer):
    """``containerd.services.snapshots.v1.Snapshots``; the request's ``snapshotter`` field is ignored
    because one socket serves one driver. Method names are the protocol's.
    """

    def __init__(self, snapshotter: Snapshotter) -> None:
        self.snapshotter = snapshotter

    def Prepare(
        self, request: snapshots_pb2.PrepareSnapshotRequest, context: grpc.ServicerContext
    ) -> snapshots_pb2.PrepareSnapshotResponse:
        mounts = _call(context, lambda: self.snapshotter.prepare(request.key, request.parent, dict(request.labels)))
        return snapshots_pb2.PrepareSnapshotResponse(mounts=_mounts(mounts))

    def View(
        self, request: snapshots_pb2.ViewSnapshotRequest, context: grpc.ServicerContext
    ) -> snapshots_pb2.ViewSnapshotResponse:
        mounts = _call(context, lambda: self.snapshotter.view(request.key, request.parent, dict(request.labels)))
        return snapshots_pb2.ViewSnapshotResponse(mounts=_mounts(mounts))

    def Mounts(
        self, request: snapshots_pb2.MountsRequest, context: grpc.ServicerContext
    ) -> snapshots_pb2.MountsResponse:
        mounts = _call(context, lambda: self.snapshotter.mounts(request.key))
        return snapshots_pb2.MountsResponse(mounts=_mounts(mounts))

    def Commit(
        self, request: snapshots_pb2.CommitSnapshotRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        _call(context, lambda: self.snapshotter.commit(request.name, request.key, dict(request.labels)))
        return empty_pb2.Empty()

    def Remove(
        self, request: snapshots_pb2.RemoveSnapshotRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        _call(context, lambda: self.snapshotter.remove(request.key))
        return empty_pb2.Empty()

    def Stat(
        self, request: snapshots_pb2.StatSnapshotRequest, context: grpc.ServicerContext
    ) -> snapshots_pb2.StatSnapshotResponse:
        snapshot = _call(context, lambda: self.snapshotter.stat(request.key))
        return snapshots_pb2.StatSnapshotResponse(info=_info(snapshot))

    def Update(
        self, request: snapshots_pb2.UpdateSnapshotRequest, context: grpc.ServicerContext
    ) -> snapshots_pb2.UpdateSnapshotResponse:
        labels: Mapping[str, str] = dict(request.info.labels)
        paths = list(request.update_mask.paths)
        snapshot = _call(context, lambda: self.snapshotter.update_labels(request.info.name, labels, paths))
        return snapshots_pb2.UpdateSnapshotResponse(info=_info(snapshot))

    def List(
        self, request: snapshots_pb2.ListSnapshotsRequest, context: grpc.ServicerContext
    ) -> Iterator[snapshots_pb2.ListSnapshotsResponse]:
        snapshots = _call(context, lambda: list(self.snapshotter.list_snapshots(list(request.filters))))
        for start in range(0, len(snapshots), LIST_BATCH):
            yield snapshots_pb2.ListSnapshotsResponse(info=[_info(s) for s in snapshots[start : start + LIST_BATCH]])

    def Usage(
        self, request: snapshots_pb2.UsageRequest, context: grpc.ServicerContext
    ) -> snapshots_pb2.UsageResponse:
        size, inodes = _call(context, lambda: self.snapshotter.usage(request.key))
        return snapshots_pb2.UsageResponse(size=size, inodes=inodes)

    def Cleanup(
        self, request: snapshots_pb2.CleanupRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        _call(context, self.snapshotter.cleanup)
        return empty_pb2.Empty()


def _remove_stale_socket(path: Path) -> None:
    """A socket left by a server that died is replaced; any other file there is an error."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise InvalidSnapshotRequest(f"{path} exists and is not a socket; choose another --socket path")
    path.unlink()


def start_server(snapshotter: Snapshotter, socket: Path, workers: int = 8) -> grpc.Server:
    """Serve ``snapshotter`` on unix socket ``socket`` (mode 0600: containerd runs as root)."""
    socket = Path(os.path.abspath(socket))
    socket.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_socket(socket)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="snapshotter"))
    snapshots_pb2_grpc.add_SnapshotsServicer_to_server(SnapshotsService(snapshotter), server)
    server.add_insecure_port(f"unix://{socket}")
    server.start()
    socket.chmod(0o600)
    return server


def serve_until_signalled(snapshotter: Snapshotter, socket: Path) -> None:
    """Serve until SIGTERM or SIGINT, then finish calls under way and remove the socket."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    server = start_server(snapshotter, socket)
    print(f"drivebay: snapshotter '{snapshotter.name}' serving on {socket}", file=sys.stderr, flush=True)
    try:
        stop.wait()
    finally:
        server.stop(grace=10).wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        Path(socket).unlink(missing_ok=True)
