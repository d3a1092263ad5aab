"""argparse value types that several command groups share."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def key_value(example: str) -> Callable[[str], tuple[str, str]]:
    """An argparse ``type`` for a ``-o K=V`` driver option; a bad value's message shows ``example``."""

    def parse(text: str) -> tuple[str, str]:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"option '{text}' is not KEY=VALUE (for example {example})")
        return key, value

    return parse
