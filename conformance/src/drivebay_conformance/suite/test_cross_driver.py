"""Cross-driver round trip: a diff made by one driver, applied by another, gives the same tree, and back."""

from __future__ import annotations

from drivebay_conformance.harness import DriverCase
from drivebay_conformance.scenarios import busy_container, supported_by
from drivebay_conformance.trees import base_layer


def test_a_diff_made_by_one_driver_applies_identically_with_another(
    driver_pair: tuple[DriverCase, DriverCase],
) -> None:
    """Driver A's container diff, applied by driver B onto the same base, shows the same tree; B's diff of
    that layer, applied back by A, does too. Only file kinds both drivers declare are made."""
    a, b = driver_pair
    for case in (a, b):
        case.apply_nodes("base", None, base_layer())
    a.graph.create_rw("rw", "base")
    with a.graph.mounted("rw") as view:
        busy_container(view, supported_by(a.capabilities, b.capabilities))
    there = a.commit("rw", "from-a", onto=b.graph)
    a.assert_same_view("rw", "from-a", other=b.graph, what=f"'{a.name}' diff applied by '{b.name}'")
    assert there.size == b.graph.diff_size("from-a"), (
        f"driver '{b.name}': apply_diff of driver '{a.name}''s diff returned {there.size} bytes, "
        f"but its diff_size says {b.graph.diff_size('from-a')}"
    )
    back = b.commit("from-a", "from-b", onto=a.graph)
    b.assert_same_view("from-a", "from-b", other=a.graph, what=f"'{b.name}' diff applied back by '{a.name}'")
    assert back.size == there.size
