"""The graph conformance suite through the HTTP round trip.

Every case of :mod:`drivebay_conformance.suite` runs against
``docker-plugin:NAME``, where NAME is the case's driver served by drivebay
on a fresh root of its own: core's facade on the client side calls
:class:`~drivebay.dockerplugin.remote.RemoteGraphDriver`, which calls the
served driver over Docker's ``GraphDriver`` protocol. Cases that pick a
filesystem for the driver's root (quota) or pair two drivers run against
the drivers themselves in the suite's own run: over HTTP the served root is
the plugin's, not the case's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip("drivebay_conformance", reason="the conformance kit is not installed (pip install -e conformance)")

from plugin_fixtures import PluginFactory, needs_root, unmount_everything_under

from drivebay_conformance.harness import DriverCase, open_driver_case
from drivebay_conformance.suite.test_capabilities import *  # noqa: F403
from drivebay_conformance.suite.test_depth import *  # noqa: F403
from drivebay_conformance.suite.test_file_kinds import *  # noqa: F403
from drivebay_conformance.suite.test_layer_creation import *  # noqa: F403
from drivebay_conformance.suite.test_lifecycle import *  # noqa: F403
from drivebay_conformance.suite.test_processes import *  # noqa: F403
from drivebay_conformance.suite.test_roundtrip import *  # noqa: F403
from drivebay_conformance.suite.test_whiteouts import *  # noqa: F403

pytestmark = needs_root

SERVED = ("vfs", "overlay2")
"""Drivers that run on any root; btrfs and aufs need a root of their own filesystem for the served side."""


@pytest.fixture
def driver_case(graph_driver_name: str, tmp_path: Path) -> Iterator[DriverCase]:
    """The case's driver served on its own root, opened by the suite as ``docker-plugin:NAME``."""
    if graph_driver_name not in SERVED:
        pytest.skip(f"over HTTP only {', '.join(SERVED)} are served here (they run on any root)")
    factory = PluginFactory(tmp_path / "served")
    (tmp_path / "served").mkdir()
    try:
        plugin = factory(("graph", graph_driver_name), discoverable=True)
        with open_driver_case(plugin.driver_name, tmp_path / "case") as case:
            yield case
    finally:
        try:
            factory.close()
        finally:
            unmount_everything_under(tmp_path)


@pytest.fixture
def driver_case_on(graph_driver_name: str) -> Iterator[Callable[[str], DriverCase]]:
    pytest.skip("cases that choose the driver's filesystem run against the driver itself, not over HTTP")
    yield  # type: ignore[misc]
