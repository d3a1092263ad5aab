"""Per-layer storage-opts, as ``graph create --storage-opt`` passes them to a driver's create hooks.

Docker's graph drivers accept one per-layer option, ``size`` (binary units,
as ``RAMInBytes``); drivers check and parse it here, the same way, and keep
for themselves only how they enforce the limit.
"""

from __future__ import annotations

from collections.abc import Mapping

from drivebay.errors import InvalidConfig
from drivebay.units import parse_size_option

LAYER_OPTIONS = ("size",)


def layer_size(driver: str, layer_id: str, storage_opts: Mapping[str, str], default: int | None) -> int | None:
    """The byte limit ``storage_opts`` ask for layer ``layer_id``, else ``default`` (``None``: no limit).

    Raises ``InvalidConfig`` naming storage driver ``driver`` for an option other than ``size`` or a bad size.
    """
    unknown = sorted(set(storage_opts) - set(LAYER_OPTIONS))
    if unknown:
        raise InvalidConfig(
            f"storage driver '{driver}' has no per-layer option {', '.join(map(repr, unknown))} (only size)"
        )
    if "size" not in storage_opts:
        return default
    return parse_size_option(storage_opts["size"], f"storage driver '{driver}' layer '{layer_id}' size")
