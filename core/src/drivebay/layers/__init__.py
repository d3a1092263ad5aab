"""The layer store, image store and container store, on top of whichever graph driver is configured.

- :mod:`~drivebay.layers.store`: content-addressed, refcounted layers (diff ID, chain ID, cache ID).
- :mod:`~drivebay.layers.images`: image configs, tags, history.
- :mod:`~drivebay.layers.containers`: init layer, read-write layer, mount, diff, commit, export.
- :mod:`~drivebay.layers.transfer`: ``image load``, ``import`` and ``save``, with
  :mod:`~drivebay.layers.docker_archive` and :mod:`~drivebay.layers.oci_archive` for the two layouts
  and :mod:`~drivebay.layers.blobs` for turning blobs into verified tars.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from drivebay.facades.graph import GraphDriver
from drivebay.layers.containers import Container, ContainerStore
from drivebay.layers.images import Image, ImageStore
from drivebay.layers.store import Layer, LayerStore
from drivebay.state import StateDB


@dataclass(frozen=True)
class Stores:
    """The three stores of one root, opened together (opening finishes what crashed processes left)."""

    layers: LayerStore
    images: ImageStore
    containers: ContainerStore


def open_stores(root: Path, state: StateDB, graph: GraphDriver) -> Stores:
    layers = LayerStore(root, state, graph)
    images = ImageStore(state, layers)
    return Stores(layers, images, ContainerStore(state, graph, images))


__all__ = ["Container", "ContainerStore", "Image", "ImageStore", "Layer", "LayerStore", "Stores", "open_stores"]
