"""Docker's rule for the names users give volumes and containers."""

from __future__ import annotations

import re

from drivebay.errors import UsageError

RESTRICTED_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
"""Docker's ``RestrictedNamePattern``: at least two characters, the first a letter or digit."""


def check_restricted_name(name: str, what: str) -> None:
    """Raise ``UsageError`` naming ``what`` (``volume``, ``container``) unless ``name`` follows Docker's rule."""
    if not RESTRICTED_NAME.fullmatch(name):
        raise UsageError(
            f"invalid {what} name {name!r}: use letters, digits, '_', '.' and '-', starting with a letter or digit, "
            "at least 2 characters"
        )
