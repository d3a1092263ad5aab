"""A second drivebay process for the concurrency and crash cases: applies a layer tar read from stdin.

``python -m drivebay_conformance.worker ROOT DRIVER LAYER PARENT`` opens the
driver's facade on ``ROOT`` (as the CLI would), creates ``LAYER`` on
``PARENT`` (``-`` for none) from the tar on stdin, and prints the applied size.
"""

from __future__ import annotations

import sys
from pathlib import Path

from drivebay.facades.graph import GraphDriver
from drivebay.loader import KINDS, load_driver
from drivebay.state import StateDB


def main(argv: list[str]) -> int:
    root, driver, layer, parent = Path(argv[0]), argv[1], argv[2], argv[3]
    state = StateDB.for_root(root)
    graph = GraphDriver(load_driver(KINDS["graph"], driver), home=root / driver, state=state, options={})
    size = graph.create_from_tar(layer, None if parent == "-" else parent, sys.stdin.buffer)
    print(size)
    # No cleanup(): it unmounts and forgets every reference on the root, other processes' too (daemon shutdown).
    state.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
