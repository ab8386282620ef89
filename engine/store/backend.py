"""The one database interface the history is written against, and its SQLite implementation.

:class:`Database` is what :class:`~sluice.engine.store.history.History`, the recorder and the lease
use: SQL with ``?`` parameters, a write :meth:`~Database.transaction`, and nothing else. Two
backends implement it — :class:`SqliteDatabase` (the embedded default, a file) and
:class:`sluice.engine.store.postgres.PostgresDatabase` (a ``postgresql://`` URL, for a team) — so
the layers above never know which one they have. SQL that differs between the two is written in the
form both accept (``"user"`` quoted, ``ON CONFLICT``), or goes through the backend's hooks
(:attr:`~Database.lock_row`, :meth:`~Database.insert`).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator, Sequence
from typing import Any, Protocol


class ConnectionLost(Exception):
    """The connection to the history's server broke (a restart, a network cut); what the failed
    transaction wrote was rolled back. :meth:`Database.reconnect`, then write again."""


class FenceFailed(Exception):
    """The server found, inside the write transaction, that the lease is no longer this
    process's; the transaction was rolled back."""


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Database(Protocol):
    """A history database (see the module docstring)."""

    #: ``"sqlite"`` or ``"postgresql"``.
    kind: str
    #: Appended to a ``SELECT`` of the lease row inside a write transaction, so that the row
    #: cannot change before the transaction ends (PostgreSQL: ``FOR SHARE``; SQLite's write
    #: transaction already excludes every other writer).
    lock_row: str
    #: Run first in the transaction that takes the lease, so that two processes taking it at
    #: once do so one after the other (SQLite: its write transaction already does).
    lock_lease: str
    #: How often the recorder writes its batch of events.
    flush_seconds: float
    #: Whether an apply's start/finish commits everything buffered with it (PostgreSQL: a commit
    #: is a round trip, fewer is faster) or its own rows alone (SQLite: a commit writes every
    #: page it touches, smaller is faster).
    group_commit: bool

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    def append(self, sql: str, table: str, columns: str, rows: Sequence[Sequence[Any]]) -> None:
        """Inside a write transaction: insert ``rows`` of new keys into ``table`` (``columns``
        as in ``sql``, the ``INSERT`` that would do it): as fast as the backend can (PostgreSQL:
        ``COPY``, which fails on a key already there — a retried transaction uses ``sql``)."""
        ...

    def query(self, sql: str, params: Sequence[Any] = ()) -> Iterator[dict[str, Any]]: ...
    def insert(self, sql: str, params: Sequence[Any]) -> int:
        """Run one ``INSERT`` into a table with an ``id`` key; the new row's id."""
        ...

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """One write transaction (a nested one joins the outer one)."""
        ...

    def atomic(self) -> contextlib.AbstractContextManager[None]: ...
    def notify(self) -> None:
        """Inside a write transaction: tell watchers when it commits (SQLite: they poll)."""
        ...

    def fence(self, estate: str, epoch: int | None, host: str, pid: int) -> bool:
        """Inside a write transaction: have the server check the lease (True), raising
        :class:`FenceFailed` from the transaction if it is lost; False: check it yourself."""
        ...

    def reconnect(self, patience: float) -> bool:
        """After :class:`ConnectionLost`: connect again, retrying with backoff for up to
        ``patience`` seconds; whether it worked."""
        ...

    def close(self) -> None: ...


class SqliteDatabase:
    """A history file through :mod:`sqlite3`, in autocommit mode: a :meth:`transaction` is one
    explicit ``BEGIN IMMEDIATE`` (the write lock taken first, waiting for it with the busy timeout,
    so two writers never meet in a deferred transaction that cannot be upgraded)."""

    kind = "sqlite"
    lock_row = ""
    lock_lease = ""
    flush_seconds = 0.25
    group_commit = False

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)

    def append(self, sql: str, table: str, columns: str, rows: Sequence[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)  # as fast as sqlite3 inserts

    def query(self, sql: str, params: Sequence[Any] = ()) -> Iterator[dict[str, Any]]:
        cursor = self.conn.execute(sql, params)
        keys = [d[0] for d in cursor.description or ()]
        for row in cursor:
            yield dict(zip(keys, row, strict=True))

    def insert(self, sql: str, params: Sequence[Any]) -> int:
        return int(self.conn.execute(sql, params).lastrowid or 0)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if self.conn.in_transaction:
            yield
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    atomic = transaction

    def notify(self) -> None:
        pass  # watchers of a file poll it

    def fence(self, estate: str, epoch: int | None, host: str, pid: int) -> bool:
        return False  # the lease row is read in the transaction (Lease.check)

    def reconnect(self, patience: float) -> bool:
        return False  # a file has no connection to lose

    def close(self) -> None:
        self.conn.close()


def wal_mode(conn: sqlite3.Connection, patience: float = 10.0) -> None:
    """Put the file in WAL mode. Switching a new file takes an exclusive lock that SQLite does not
    wait for (no busy handler): a second process opening the new file at the same moment got
    "database is locked" — so wait for it here, as the busy timeout waits for any other lock."""
    deadline = time.monotonic() + patience
    delay = 0.002
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
