"""How commands print: Docker-style columns for people, JSON for scripts, Docker's sizes.

Columns are plain text (no box drawing, no colour) so that ``awk``, ``cut``
and tests read them the same whether stdout is a terminal or a pipe.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Left-aligned columns three spaces apart, headers in capitals, as ``docker ls`` prints."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    for line in [headers, *rows]:
        print("   ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


def print_json(value: object) -> None:
    """Indented, key-sorted JSON on stdout; paths and other objects as strings."""
    json.dump(value, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def print_pairs(pairs: Sequence[tuple[str, str]], indent: int = 0) -> None:
    """``Key: value`` lines, as ``docker info`` prints a section."""
    for key, value in pairs:
        print(f"{' ' * indent}{key}: {value}")


def human_size(size: int) -> str:
    """Docker's sizes: decimal units, three significant digits (``1.24MB``)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.3g}{unit}"
        value /= 1000
    raise AssertionError("unreachable")
