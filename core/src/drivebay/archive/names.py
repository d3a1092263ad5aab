"""Layer IDs that are safe to use as file and directory names."""

from __future__ import annotations

import re

from drivebay.errors import UsageError

_LAYER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def check_layer_id(layer_id: str) -> None:
    """Raise ``UsageError`` unless ``layer_id`` is 1-128 of ``[A-Za-z0-9_.-]``, starting with a letter or digit."""
    if not _LAYER_ID.fullmatch(layer_id):
        raise UsageError(
            f"invalid layer ID '{layer_id}': use 1 to 128 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
