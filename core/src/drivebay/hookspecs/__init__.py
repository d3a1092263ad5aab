"""Hook specifications, one module per driver kind.

pluggy's hook namespace is flat, so every hook carries its kind's prefix:
``graph_``, ``volume_``, ``net_``, ``log_``. Drivers mark their
implementations with :data:`hookimpl`.
"""

import pluggy

PROJECT = "drivebay"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = ["PROJECT", "hookimpl", "hookspec"]
