"""Fixtures every test directory shares: a real PostgreSQL server for the history's second backend.

    postgres        session-scoped PostgresServer (tests/pg_server.py) on 127.0.0.1, stopped by pid
    history_url     function-scoped: the URL of a fresh, empty database on it

When the server cannot start: ``pytest.fail`` under ``CI=true``, ``pytest.skip`` elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from pg_server import PostgresServer, PostgresUnavailable, start_postgres


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    try:
        server = start_postgres()
    except PostgresUnavailable as exc:
        if _in_ci():
            pytest.fail(f"CI=true and PostgreSQL unavailable: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    yield server
    server.stop()


@pytest.fixture
def history_url(postgres: PostgresServer) -> str:
    return postgres.new_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def histories(request: pytest.FixtureRequest):
    """``histories(directory)`` → a history on each backend in turn (tests/history_backends.py)."""
    from history_backends import PgHistory, SqliteHistory

    if request.param == "sqlite":
        return SqliteHistory
    server = request.getfixturevalue("postgres")
    return lambda directory: PgHistory(server.new_database())
