"""Quota: a ``size`` storage-opt limits a layer where the driver declares it can, and is refused elsewhere."""

from __future__ import annotations

import errno
from collections.abc import Callable

import pytest

from drivebay.errors import QuotaNotSupported
from drivebay.fs.backing import backing_filesystem
from drivebay.fs.loopfs import can_make
from drivebay.testing.scratchfs import write_random
from drivebay_conformance.harness import DriverCase, driver_capabilities
from drivebay_conformance.trees import base_layer

LIMIT = 50 << 20


def test_a_size_limit_stops_writes_past_it(graph_driver_name: str, driver_case_on: Callable[[str], DriverCase]) -> None:
    """As moby's DriverTestSetQuota and stricter: in a read-write layer created with ``size=50M`` a 25 MiB file
    fits and a further 50 MiB one fails with EDQUOT or ENOSPC, while a sibling without a size is not limited."""
    _, capabilities = driver_capabilities(graph_driver_name)
    if not capabilities.quota:
        pytest.skip(f"driver '{graph_driver_name}' declares quota=False")
    reasons = {fs: can_make(fs) for fs in capabilities.quota_filesystems}
    usable = [fs for fs, reason in reasons.items() if reason is None]
    if not usable:
        pytest.skip(
            f"driver '{graph_driver_name}' enforces quotas on {', '.join(reasons) or 'no filesystem'}, "
            f"none of which this host can make: " + "; ".join(f"{fs}: {why}" for fs, why in reasons.items())
        )
    refused: list[str] = []
    for fs in usable:
        case = driver_case_on(fs)
        case.apply_nodes("base", None, base_layer())
        try:
            case.graph.create_rw("limited", "base", {"size": "50M"})
        except QuotaNotSupported as exc:
            # The filesystem can be made but this kernel cannot enforce quotas on it (CONFIG_QUOTA off, say).
            refused.append(f"{fs}: {exc}")
            continue
        _check_limit(case, fs)
        return
    pytest.skip(f"driver '{graph_driver_name}' cannot enforce quotas on this host: " + "; ".join(refused))


def _check_limit(case: DriverCase, fs: str) -> None:
    graph = case.graph
    graph.create_rw("unlimited", "base")
    where = f"{case.chain('limited')} on {fs} with size=50M"
    with graph.mounted("limited") as view:
        write_random(view / "smallfile", LIMIT // 2)
        try:
            write_random(view / "bigfile", LIMIT)
        except OSError as exc:
            assert exc.errno in (errno.EDQUOT, errno.ENOSPC), (
                f"{where}: writing past the limit failed with {exc!r}, not EDQUOT or ENOSPC"
            )
        else:
            pytest.fail(f"{where}: writing 75 MiB in all succeeded; the limit is not enforced")
        assert (view / "smallfile").stat().st_size == LIMIT // 2
    with graph.mounted("unlimited") as view:
        write_random(view / "bigfile", LIMIT + LIMIT // 2)


def test_a_size_limit_where_it_cannot_be_enforced_is_refused(driver_case: DriverCase) -> None:
    """On a filesystem the driver does not declare quotas for, ``size`` raises ``QuotaNotSupported`` instead of
    being ignored, and no layer is left behind."""
    fs = backing_filesystem(driver_case.home)
    if driver_case.capabilities.quota and fs in driver_case.capabilities.quota_filesystems:
        pytest.skip(f"driver '{driver_case.name}' declares quotas on {fs}, the filesystem of this root")
    driver_case.apply_nodes("base", None, base_layer())
    with pytest.raises(QuotaNotSupported):
        driver_case.graph.create_rw("limited", "base", {"size": "50M"})
    assert not driver_case.graph.exists("limited")
    assert not driver_case.graph.loaded.hook.graph_exists(layer_id="limited")
