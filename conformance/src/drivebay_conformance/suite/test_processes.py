"""Concurrency and crash safety: separate drivebay processes on one root."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

import pytest

from drivebay.fs.mounts import mounts_under
from drivebay_conformance.harness import DriverCase
from drivebay_conformance.trees import Node, base_layer, directory, file, layer_tar

HANG_GUARD_SECONDS = 300
CHUNK = 1 << 20
BIG_FILE = 8 << 20
"""Far bigger than a pipe's buffer: once a writer is past the first megabytes, the reader is applying."""


def _worker(case: DriverCase, layer: str, parent: str, logs: Path) -> subprocess.Popen[bytes]:
    # Output goes to files: a child blocked on a full stdout pipe would never read its stdin.
    with open(logs / f"{layer}.out", "wb") as out, open(logs / f"{layer}.err", "wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "drivebay_conformance.worker", str(case.root), case.name, layer, parent],
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=err,
        )


def _feed_or_fail(steps: list[tuple[subprocess.Popen[bytes], memoryview, bool]], what: str) -> None:
    """Write each ``(process, data, close_after)`` in order; fail, killing the processes, if one stops reading.

    The guard only turns a hang (a deadlock between processes) into a failure; nothing is timed.
    """
    failure: list[BaseException] = []

    def feed() -> None:
        try:
            for proc, data, close in steps:
                assert proc.stdin is not None
                _feed(proc.stdin, data)
                if close:
                    proc.stdin.close()
        except BaseException as exc:  # handed to the test thread below
            failure.append(exc)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    feeder.join(HANG_GUARD_SECONDS)
    if feeder.is_alive():
        for proc, _, _ in steps:
            proc.kill()
        feeder.join()
        pytest.fail(f"{what}: a process stopped reading its layer tar for {HANG_GUARD_SECONDS} s (a deadlock?)")
    if failure:
        raise AssertionError(f"{what}: feeding a layer tar failed; see the process's stderr") from failure[0]


def _layer_with_big_file(name: str) -> list[Node]:
    return [directory(name), file(f"{name}/small.txt", f"{name}\n".encode()), file(f"{name}/big", os.urandom(BIG_FILE))]


def _feed(stdin: IO[bytes], data: memoryview) -> None:
    for start in range(0, len(data), CHUNK):
        stdin.write(data[start : start + CHUNK])
    stdin.flush()


def _result(proc: subprocess.Popen[bytes], logs: Path, layer: str) -> str:
    proc.wait()
    err = (logs / f"{layer}.err").read_text(errors="replace").strip()
    assert proc.returncode == 0, f"the process applying '{layer}' failed (exit {proc.returncode}): {err[-2000:]}"
    return (logs / f"{layer}.out").read_text().strip()


def test_two_processes_apply_layers_on_one_parent_at_the_same_time(driver_case: DriverCase) -> None:
    """Two processes each apply a layer onto the same parent; their tar streams are interleaved so both are
    applying at once. Both succeed, and the layer registry and both views are exactly right."""
    graph = driver_case.graph
    driver_case.apply_nodes("base", None, base_layer())
    logs = driver_case.scratch
    layers = {name: _layer_with_big_file(name) for name in ("left", "right")}
    tars = {name: layer_tar(nodes) for name, nodes in layers.items()}
    procs = {layer: _worker(driver_case, layer, "base", logs) for layer in tars}
    try:
        # Each write returns once that process has read nearly all of it, so both are mid-apply together.
        halves = [(procs[layer], memoryview(data)[: len(data) // 2], False) for layer, data in tars.items()]
        rests = [(procs[layer], memoryview(data)[len(data) // 2 :], True) for layer, data in tars.items()]
        _feed_or_fail(halves + rests, f"driver '{driver_case.name}', two processes applying onto 'base'")
        sizes = {layer: int(_result(proc, logs, layer)) for layer, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert sorted(graph.layers()) == ["base", "left", "right"]
    for layer, nodes in layers.items():
        assert graph.parent(layer) == "base"
        assert graph.refcount(layer) == 0
        driver_case.assert_applied_size(layer, sizes[layer])
        reference = driver_case.reference(f"expected-{layer}", base_layer(), nodes)
        driver_case.assert_view_matches(layer, reference, "its tar applied to a directory")


def test_a_process_killed_during_apply_leaves_no_layer_and_the_next_start_removes_it(driver_case: DriverCase) -> None:
    """SIGKILL in the middle of applying a slow tar: ``exists`` never reports the layer, the next driver start
    removes what the driver stored for it, and the same layer ID can then be applied in full."""
    graph = driver_case.graph
    driver_case.apply_nodes("base", None, base_layer())
    logs = driver_case.scratch
    data = layer_tar(_layer_with_big_file("partial"))
    proc = _worker(driver_case, "partial", "base", logs)
    try:
        # Returns once the process has read most of this: it is in the middle of the big file.
        _feed_or_fail([(proc, memoryview(data)[: len(data) // 2], False)], f"driver '{driver_case.name}'")
        assert proc.poll() is None, f"the applying process ended early: {(logs / 'partial.err').read_text()[-2000:]}"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.stdin is not None
        proc.stdin.close()
    assert not graph.exists("partial"), f"driver '{driver_case.name}': a half-applied layer is reported as existing"
    assert "partial" not in graph.layers()
    reopened = driver_case.open()
    assert not reopened.loaded.hook.graph_exists(layer_id="partial"), (
        f"driver '{driver_case.name}': after a restart the driver still holds the half-applied layer 'partial'"
    )
    home = Path(os.path.realpath(driver_case.home))
    left = [str(m.mount_point) for m in mounts_under(home) if m.mount_point != home]
    assert left == [], f"driver '{driver_case.name}': mounts of the killed process remain after a restart: {left}"
    size = reopened.create_from_tar("partial", "base", io.BytesIO(data))
    assert size == reopened.diff_size("partial"), f"driver '{driver_case.name}': apply_diff and diff_size disagree"
    with reopened.mounted("partial") as view:
        assert (view / "partial" / "big").stat().st_size == BIG_FILE
