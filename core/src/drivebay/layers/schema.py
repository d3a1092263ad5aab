"""The layer store's tables in ``drivebay.db``: layers, leases, images, tags and containers.

They live in one script because they refer to each other: a layer is in use
while an image's top layer, a child layer or a live lease names it, and an
image is in use while a container names it.

``state`` follows the graph facade's rule: a row is ``creating`` or
``removing`` while its owner ``pid`` works on it and only ``ready`` rows are
visible. Rows a dead process left are finished at the next start.
"""

from __future__ import annotations

SCHEMA = """
CREATE TABLE IF NOT EXISTS layerstore_layers (
    chain_id TEXT PRIMARY KEY,
    diff_id TEXT NOT NULL,
    parent TEXT,
    cache_id TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    tar_size INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('creating', 'ready', 'removing')),
    pid INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS layerstore_layers_parent ON layerstore_layers (parent);
CREATE TABLE IF NOT EXISTS layerstore_leases (
    chain_id TEXT NOT NULL,
    pid INTEGER NOT NULL,
    PRIMARY KEY (chain_id, pid)
);
CREATE TABLE IF NOT EXISTS layerstore_images (
    id TEXT PRIMARY KEY,
    config BLOB NOT NULL,
    top_chain TEXT,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS layerstore_images_top ON layerstore_images (top_chain);
CREATE TABLE IF NOT EXISTS layerstore_tags (
    ref TEXT PRIMARY KEY,
    image_id TEXT NOT NULL REFERENCES layerstore_images (id) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS layerstore_containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    image_id TEXT NOT NULL REFERENCES layerstore_images (id),
    init_layer TEXT NOT NULL,
    rw_layer TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('creating', 'ready', 'removing')),
    pid INTEGER NOT NULL,
    created REAL NOT NULL
)
"""
