"""The root's SQLite metadata database, ``<root>/drivebay.db``.

Every change is one transaction. ``BEGIN IMMEDIATE`` takes the write lock at
the start, so two drivebay processes serialise instead of failing half-way;
WAL mode lets readers go on meanwhile. Components own their tables and create
them with :meth:`StateDB.ensure_schema`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DB_NAME = "drivebay.db"
BUSY_TIMEOUT_MS = 60_000


class StateDB:
    """One connection per thread to ``path``; transactions nest by joining the outer one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()

    @classmethod
    def for_root(cls, root: Path) -> StateDB:
        root.mkdir(parents=True, exist_ok=True)
        return cls(root / DB_NAME)

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL is still atomic and consistent across a crash of any process;
            # only a power cut can roll back the last commits, and then all tables roll back
            # together. FULL would fsync on every mount refcount change, the hot path of get/put.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            self._local.depth = 0
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run the block as one write transaction; roll back on any exception."""
        conn = self._connection()
        if self._local.depth:
            self._local.depth += 1
            try:
                yield conn
            finally:
                self._local.depth -= 1
            return
        conn.execute("BEGIN IMMEDIATE")
        self._local.depth = 1
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")
        finally:
            self._local.depth = 0

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        """Read without taking the write lock."""
        return list(self._connection().execute(sql, params))

    def ensure_schema(self, script: str) -> None:
        """Create a component's tables; ``script`` uses ``CREATE ... IF NOT EXISTS``."""
        with self.transaction() as conn:
            for statement in filter(None, (s.strip() for s in script.split(";"))):
                conn.execute(statement)

    def close(self) -> None:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
