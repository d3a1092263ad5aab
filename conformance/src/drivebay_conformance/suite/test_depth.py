"""Depth: long chains mount and read the bottom layer from the top; one layer past the declared limit is refused."""

from __future__ import annotations

import pytest

from drivebay.errors import DepthLimitExceeded
from drivebay_conformance.harness import DriverCase
from drivebay_conformance.trees import directory, file

CHAIN = 128
LIMIT_TESTED_UP_TO = 1000
SLOW_FROM = 500


def _chain(case: DriverCase, depth: int, files_every_layer: bool) -> str:
    """Build ``depth`` layers, each one file in ``/layers`` when asked; returns the top layer's ID."""
    case.apply_nodes("layer-001", None, [file("bottom.txt", b"bottom\n"), directory("layers")])
    for n in range(2, depth + 1):
        layer, parent = f"layer-{n:03d}", f"layer-{n - 1:03d}"
        if files_every_layer:
            case.apply_nodes(layer, parent, [directory("layers"), file(f"layers/{n:03d}", f"{n}\n".encode())])
        else:
            case.graph.create(layer, parent)
    return f"layer-{depth:03d}"


def test_a_chain_of_128_layers_reads_the_bottom_file_from_the_top(driver_case: DriverCase) -> None:
    """128 layers (or the declared maximum, if lower), each adding a file: the top's view holds every file,
    the bottom one included."""
    depth = min(CHAIN, driver_case.capabilities.max_depth)
    top = _chain(driver_case, depth, files_every_layer=True)
    with driver_case.graph.mounted(top) as view:
        assert (view / "bottom.txt").read_bytes() == b"bottom\n", (
            f"driver '{driver_case.name}': the bottom file is not readable from the top of a {depth}-layer chain"
        )
        have = sorted(p.name for p in (view / "layers").iterdir())
    assert have == [f"{n:03d}" for n in range(2, depth + 1)], (
        f"driver '{driver_case.name}', {depth}-layer chain: the top view lacks layer files "
        f"{sorted(set(f'{n:03d}' for n in range(2, depth + 1)) - set(have))}"
    )
    assert driver_case.graph.depth(top) == depth


def test_the_declared_depth_limit_mounts_and_one_more_layer_is_refused(driver_case: DriverCase, run_slow: bool) -> None:
    """A chain exactly as deep as ``max_depth`` mounts and reads its bottom file; creating one more layer fails
    with ``DepthLimitExceeded`` naming the limit."""
    limit = driver_case.capabilities.max_depth
    if limit > LIMIT_TESTED_UP_TO:
        pytest.skip(
            f"driver '{driver_case.name}' declares max_depth={limit}, deeper than the suite builds "
            f"({LIMIT_TESTED_UP_TO}); the limit itself is not exercised"
        )
    if limit >= SLOW_FROM and not run_slow:
        pytest.skip(
            f"slow case: a {limit}-layer chain (driver '{driver_case.name}' declares max_depth={limit}); "
            "run with --run-slow"
        )
    top = _chain(driver_case, limit, files_every_layer=False)
    with driver_case.graph.mounted(top) as view:
        assert (view / "bottom.txt").read_bytes() == b"bottom\n"
    with pytest.raises(DepthLimitExceeded) as info:
        driver_case.graph.create("one-too-deep", top)
    assert str(limit) in str(info.value), f"the depth error does not name the limit {limit}: {info.value}"
    assert not driver_case.graph.exists("one-too-deep")
