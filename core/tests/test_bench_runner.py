"""The bench runner's bookkeeping: phases, shared fixtures, execution order, data made once per run.

Uses the real vfs driver on ``tmp_path`` and real generated data; no timing is asserted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from layer_fixtures import open_graph

from drivebay.bench.measure import Phases, phase_delta
from drivebay.bench.runner import execution_order
from drivebay.bench.workloads import BenchEnv, FsData, RunData, Scale, installed_workloads
from drivebay.facades.graph import GraphDriver

TINY = Scale(
    small_files=30,
    big_file_bytes=1 << 16,
    copy_up_bytes=1 << 14,
    read_layers=2,
    files_per_read_layer=3,
    changed_files=5,
)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[BenchEnv]:
    driver: GraphDriver = open_graph(tmp_path / "graph", "vfs")
    phases = Phases()
    (tmp_path / "cache").mkdir()
    run = RunData(tmp_path / "cache", TINY, 7, phases)
    bench_env = BenchEnv(driver, tmp_path / "scratch", FsData(tmp_path / "fs", run), phases)
    try:
        yield bench_env
    finally:
        bench_env.release_shared()
        bench_env.remove_layers()
        driver.cleanup()
        driver.state.close()


def test_nested_phases_charge_only_the_inner_one() -> None:
    phases = Phases()
    with phases.phase("setup"):
        with phases.phase("datagen"):
            pass
        before = phases.snapshot()
        with phases.phase("datagen"):
            pass
    totals = phases.snapshot()
    assert set(totals) == {"setup", "datagen"}
    assert all(seconds >= 0 for seconds in totals.values())
    assert set(phase_delta(before, totals)) <= {"setup", "datagen"}
    document = phases.to_json()
    assert set(document) == {"wall_s", "totals", "by_fs"}
    spent, wall = document["totals"], document["wall_s"]
    assert isinstance(spent, dict) and isinstance(wall, float)
    assert sum(spent.values()) <= wall + 0.01
    assert phases.summary().startswith("bench took ")


def test_a_shared_fixture_is_built_once_and_its_layers_removed_on_release(env: BenchEnv) -> None:
    builds = []

    def build() -> str:
        builds.append(1)
        return env.create_from_tar(None, env.data.small_tar, "fixture")

    layer = env.shared("small-layer", build)
    assert env.shared("small-layer", build) == layer and len(builds) == 1
    assert env.layers == [], "a fixture's layers are not the workload's to remove"
    env.remove_layers()
    assert env.driver.exists(layer)

    released: list[str] = []
    child = env.shared("on-top", lambda: env.create_rw(layer, "child"), released.append)
    env.release_shared(keep=("small-layer",))
    assert released == [child] and not env.driver.exists(child) and env.driver.exists(layer)
    env.release_shared()
    assert not env.driver.exists(layer)


def test_a_failed_fixture_build_leaves_no_layer(env: BenchEnv) -> None:
    made: list[str] = []

    def build() -> str:
        made.append(env.create_from_tar(None, env.data.tiny_tar(0), "half"))
        raise RuntimeError("build failed")

    with pytest.raises(RuntimeError):
        env.shared("broken", build)
    assert made and not env.driver.exists(made[0])
    assert env.shared("broken", lambda: "rebuilt") == "rebuilt"


def test_run_data_is_made_once_and_trees_copied_to_each_filesystem(env: BenchEnv, tmp_path: Path) -> None:
    run = env.data.run
    assert run.small_tar is run.small_tar and run.small_tar.parent == tmp_path / "cache"
    other_fs = FsData(tmp_path / "other-fs", run)
    assert other_fs.small_tar == env.data.small_tar, "tars are read from the run's cache by every filesystem"
    for data in (env.data, other_fs):
        tree = data.small_tree
        assert tree.is_relative_to(data.dir)
        names = sorted(p.relative_to(tree) for p in tree.rglob("*.py"))
        assert names == sorted(p.relative_to(run.small_tree) for p in run.small_tree.rglob("*.py"))
        assert data.copy_up_file.read_bytes() == run.copy_up_file.read_bytes()
    assert len(run.changed_files) == TINY.changed_files
    assert run.changed_files == RunData(tmp_path / "cache", TINY, 7, Phases()).changed_files, "seeded"
    assert {"datagen", "data-copy"} <= set(env.phases.snapshot())


def test_workloads_sharing_a_fixture_run_next_to_each_other() -> None:
    workloads = installed_workloads()
    order = execution_order(workloads)
    assert sorted(order) == sorted(workloads)
    users: dict[str, list[int]] = {}
    for position, name in enumerate(order):
        for key in workloads[name].shares:
            users.setdefault(key, []).append(position)
    for key, positions in users.items():
        assert positions == list(range(positions[0], positions[0] + len(positions))), f"{key} users are split"
    assert order.index("apply-small-files") < order.index("remove-image")
    assert order.index("image-load") < order.index("commit-after-changes")
