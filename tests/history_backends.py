"""The two history backends, seen from a test: where the estate points, and reading rows back.

``histories(directory)`` (the conftest fixture, parametrised ``sqlite`` / ``postgresql``) gives a
:class:`SqliteHistory` (the file beside the estate) or a :class:`PgHistory` (a fresh database on the
test server). Tests write ``history = "<.setting>"`` in the estate and read with ``.query``, SQL with
``?`` parameters, as the store writes it. Reads of a history still being created return ``[]``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any


class SqliteHistory:
    kind = "sqlite"

    def __init__(self, directory: Path):
        self.path = directory / ".sluice" / "history.db"
        self.setting = ".sluice/history.db"

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        if not self.path.exists():
            return []
        conn = sqlite3.connect(self.path, timeout=10)
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # being created
                return []
            raise
        finally:
            conn.close()


class PgHistory:
    kind = "postgresql"

    def __init__(self, url: str):
        self.url = self.setting = url

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            try:
                return conn.execute(sql.replace("?", "%s"), params).fetchall()  # type: ignore[arg-type]
            except psycopg.errors.UndefinedTable:
                return []
