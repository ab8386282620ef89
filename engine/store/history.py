"""The SQLite history: every event, apply, sample and operator action; the version ledger; the lease.

One :class:`History` owns the connection (sqlite-utils over a connection in autocommit mode, so
``db.atomic()`` is one explicit transaction). The file is created 0600 in a 0700 directory, in WAL
mode. Rows are appended, never rewritten — except that an apply row and a rollout row are
*completed* (finished, outcome) once. Migrations run forward from the recorded schema version.

The event stream is stored in two tables since schema 3: a check sample (two thirds of a
rollout's events) is one ``samples`` row, its fields in columns, keyed by its ``seq``; every other
event is an ``event_log`` row with its fields as JSON. The ``events`` view joins them back into the
whole stream, as JSON, for any SQL reader; sluice itself reads the two tables
(:meth:`History.event_rows`).

This module opens, migrates and writes; what is read back lives beside it — rollouts and their
events in :mod:`.reads`, the version ledger in :mod:`.ledger`, rows decoded in :mod:`.event_rows`
— and :class:`History` brings them together.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sluice.engine.model.estate import is_history_url
from sluice.engine.store.backend import Database, FenceFailed, SqliteDatabase, wal_mode
from sluice.engine.store.lease import LeaseLost
from sluice.engine.store.ledger import LedgerReads
from sluice.engine.store.readonly import ReadProblem, not_writable, open_readonly
from sluice.engine.store.reads import RolloutReads, RolloutRecord
from sluice.engine.store.schema import (  # the schema's names are known from here too
    MIGRATIONS,
    PAGE_SIZE,
    SCHEMA_VERSION,
    WAL_CHECKPOINT_BYTES,
)

if TYPE_CHECKING:
    from sluice.engine.store.lease import Lease

# The store's front door: what its readers use comes from here, wherever it is defined.
__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "WAL_CHECKPOINT_BYTES",
    "History",
    "HistoryError",
    "HistoryNotWritable",
    "RolloutRecord",
]


class HistoryError(Exception):
    """The history file cannot be opened or is not a sluice history."""


class HistoryNotWritable(HistoryError):
    """The history exists but this process cannot write it (a read-only file or directory,
    another user's, an immutable file, a full disk): reading it still works."""


def _create_private(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


class History(RolloutReads, LedgerReads):
    """The estate's history database. Open with :meth:`open`; one per process."""

    def __init__(self, db: Database, path: Path | str):
        self.db = db
        #: Where it is: the file's path, or the URL (its password never shown).
        self.path = path
        #: The lease of a driving session: every :meth:`writing` transaction checks it.
        self.fence: Lease | None = None
        self._listener: Any = None

    @classmethod
    def open(cls, path: Path | str, *, create: bool = True, readonly: bool = False) -> History:
        """Open (creating 0600 if needed) and migrate the history at ``path`` — a file, or a
        ``postgresql://`` URL (:mod:`sluice.engine.store.postgres`).

        With ``readonly`` a file is only read (``history``, ``show``, ``export``, ``replay``):
        it works on a history this process may not write. Without it, a history that cannot
        be written raises :class:`HistoryNotWritable`.
        """
        if isinstance(path, str) and is_history_url(path):
            return cls._open_url(path, create=create)
        path = Path(path)
        if readonly and path.exists():
            try:
                conn = open_readonly(path, SCHEMA_VERSION)
            except ReadProblem as exc:
                raise HistoryError(f"{path}: {exc}") from None
            if conn is not None:
                return cls(SqliteDatabase(conn), path)
        try:
            new = not path.exists()
            if new:
                if not create:
                    raise HistoryError(
                        f"{path}: no history yet (no rollout has run on this estate)"
                    )
                _create_private(path)
            conn = sqlite3.connect(
                path, isolation_level=None, timeout=10.0, check_same_thread=False
            )
            if new:  # only an empty file takes a page size (a WAL-mode file keeps its own)
                conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
            wal_mode(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_BYTES // page_size}")
            conn.execute(f"PRAGMA journal_size_limit={WAL_CHECKPOINT_BYTES}")
            history = cls(SqliteDatabase(conn), path)
            history._migrate()
            for suffix in ("-wal", "-shm"):
                side = path.with_name(path.name + suffix)
                if side.exists():
                    os.chmod(side, 0o600)
        except sqlite3.DatabaseError as exc:
            if not_writable(exc) and path.exists():
                raise HistoryNotWritable(f"{path}: the history is not writable ({exc})") from None
            raise HistoryError(f"{path}: not a usable sluice history ({exc})") from None
        except OSError as exc:
            if path.exists():
                raise HistoryNotWritable(
                    f"{path}: the history is not writable ({exc.strerror or exc})"
                ) from None
            raise HistoryError(f"{path}: cannot open the history: {exc.strerror}") from None
        return history

    @classmethod
    def _open_url(cls, url: str, *, create: bool) -> History:
        from sluice.engine.store.postgres import HistoryUrlError, open_url, shown

        try:
            return cls(open_url(url, create=create, version=SCHEMA_VERSION), shown(url))
        except HistoryUrlError as exc:
            raise HistoryError(str(exc)) from None

    def _migrate(self) -> None:
        # One write transaction, its lock taken first: two processes opening a new history at
        # once migrate it one after the other (the second finds it done).
        with self.db.transaction():
            self.db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = self.db.execute("SELECT MAX(version) FROM schema_version").fetchone()
            current = row[0] or 0
            if current > SCHEMA_VERSION:
                raise HistoryError(
                    f"{self.path}: written by a newer sluice (schema {current} > {SCHEMA_VERSION})"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[version].split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute("INSERT INTO schema_version (version) VALUES (?)", [version])

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        self.db.close()

    # ------------------------------------------------------------------ writing

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """One write transaction; in a driving session it first checks, inside it, that this
        process still holds the lease (:class:`~sluice.engine.store.lease.LeaseLost` if not)."""
        try:
            with self.db.transaction():
                if self.fence is not None:
                    self.fence.check()
                yield
                self.db.notify()
        except FenceFailed:
            assert self.fence is not None
            raise LeaseLost(self.fence.lost_text()) from None

    async def changed(self, timeout: float) -> bool:
        """Wait until a writer commits to this history (True) or ``timeout`` passes (False).

        On PostgreSQL a watcher hears the writer's NOTIFY (on a connection of its own); a
        SQLite file cannot tell, so this only waits ``timeout`` (watchers poll it).
        """
        if self.db.kind != "postgresql":
            await asyncio.sleep(timeout)
            return False
        try:
            if self._listener is None:
                self._listener = self.db.listen()  # type: ignore[attr-defined]
            return bool(await asyncio.to_thread(self._listener.wait, timeout))
        except Exception:  # the server restarted: wait, listen again next time, read anyway
            if self._listener is not None:
                with contextlib.suppress(Exception):
                    self._listener.close()
                self._listener = None
            await asyncio.sleep(timeout)
            return False

    def create_rollout(
        self,
        *,
        estate: str,
        module: str,
        version: str,
        from_versions: str,
        actor: str,
        host: str,
        plan: dict[str, Any],
        started: float,
        kind: str = "rollout",
    ) -> int:
        """Allocate a rollout id (the row is written before anything runs)."""
        with self.writing():
            return self.db.insert(
                "INSERT INTO rollouts (estate, module, from_versions, version, actor, host, kind, started, "
                "waves_total, plan) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    estate,
                    module,
                    from_versions,
                    version,
                    actor,
                    host,
                    kind,
                    started,
                    len(plan.get("waves", [])),
                    json.dumps(plan),
                ],
            )

    def reopen_rollout(self, rollout_id: int) -> None:
        """A resumed rollout runs again."""
        with self.writing():
            self.db.execute(
                "UPDATE rollouts SET outcome = 'running', finished = NULL WHERE id = ?",
                [rollout_id],
            )
