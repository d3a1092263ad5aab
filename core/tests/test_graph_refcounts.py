"""Mount refcounts in ``drivebay.db``: get takes one in the statement that checks the layer, old roots are rebuilt."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from drivebay.errors import LayerNotFound
from drivebay.state import DB_NAME
from drivebay.testing.graphs import OpenGraph

OLD_REFS_TABLE = """
CREATE TABLE graph_mount_refs (
    driver TEXT NOT NULL,
    id TEXT NOT NULL,
    count INTEGER NOT NULL CHECK (count > 0),
    PRIMARY KEY (driver, id)
)
"""


def _refs_table_sql(root: Path) -> str:
    with sqlite3.connect(root / DB_NAME) as db:
        (sql,) = db.execute("SELECT sql FROM sqlite_master WHERE name='graph_mount_refs'").fetchone()
    return str(sql)


def test_get_of_a_missing_or_unfinished_layer_takes_no_reference(vfs_graphs: OpenGraph) -> None:
    graph = vfs_graphs()
    with pytest.raises(LayerNotFound, match="layer 'nope' does not exist in storage driver 'vfs'"):
        graph.get("nope")
    graph.create("a")
    with graph.state.transaction() as db:
        db.execute("UPDATE graph_layers SET state='creating' WHERE id='a'")
    with pytest.raises(LayerNotFound, match="layer 'a' does not exist"):
        graph.get("a")
    assert graph.state.query("SELECT * FROM graph_mount_refs") == []


def test_a_root_with_the_old_refcount_table_is_rebuilt_keeping_its_counts(
    vfs_graphs: OpenGraph, tmp_path: Path
) -> None:
    graph = vfs_graphs()
    graph.create("a")
    graph.get("a")
    graph.get("a")
    graph.state.close()
    # A root made before the table was WITHOUT ROWID, holding two references to 'a'.
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute("DROP TABLE graph_mount_refs")
        db.execute(OLD_REFS_TABLE)
        db.execute("INSERT INTO graph_mount_refs VALUES ('vfs', 'a', 2)")
    assert "WITHOUT ROWID" not in _refs_table_sql(tmp_path)
    reopened = vfs_graphs()
    assert "WITHOUT ROWID" in _refs_table_sql(tmp_path)
    assert reopened.refcount("a") == 2
    reopened.put("a")
    reopened.put("a")
    assert reopened.refcount("a") == 0
