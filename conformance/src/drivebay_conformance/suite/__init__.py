"""The conformance cases, importable in one line by a driver's own test module (as sqlalchemy dialects do)::

    from drivebay_conformance.suite import *  # noqa: F403

Every ``test_*`` function of the modules below is re-exported here; the
fixtures they use come from the ``drivebay_conformance`` pytest plugin.
"""

from __future__ import annotations

from types import ModuleType

from drivebay_conformance.suite import (
    test_capabilities,
    test_cross_driver,
    test_depth,
    test_file_kinds,
    test_layer_creation,
    test_lifecycle,
    test_processes,
    test_quota,
    test_roundtrip,
    test_whiteouts,
)

MODULES: tuple[ModuleType, ...] = (
    test_layer_creation,
    test_whiteouts,
    test_file_kinds,
    test_roundtrip,
    test_cross_driver,
    test_depth,
    test_lifecycle,
    test_capabilities,
    test_quota,
    test_processes,
)


def _exported() -> dict[str, object]:
    cases: dict[str, object] = {}
    for module in MODULES:
        for name, value in vars(module).items():
            if name.startswith("test_") and callable(value) and value.__module__ == module.__name__:
                if name in cases:
                    raise ImportError(f"conformance case {name} is defined twice ({module.__name__})")
                cases[name] = value
    return cases


globals().update(_exported())
__all__ = sorted(_exported())
