"""A history on a PostgreSQL server (``[estate] history = "postgresql://…"``), through psycopg 3.

The same :class:`~sluice.engine.store.backend.Database` interface as the SQLite file: the same
tables, rows and meaning (:data:`~sluice.engine.store.pg_schema.PG_MIGRATIONS` is the SQLite
schema at the same version, in PostgreSQL's types), the same lease, one transaction per write. The URL follows libpq's
conventions — the password from ``PGPASSWORD`` or ``~/.pgpass``, ``sslmode`` and the other
parameters honoured — and may hold ``{env.X}`` placeholders; the password is never shown.

psycopg is the optional extra ``sluice[postgres]``: without it a URL history is a one-line error.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from sluice.engine.store.backend import ConnectionLost, FenceFailed
from sluice.engine.store.pg_schema import (  # the schema's names are known from here too
    FENCE_SQLSTATE,
    PG_FIRST_VERSION,
    PG_FUNCTIONS,
    PG_MIGRATIONS,
)

if TYPE_CHECKING:
    import psycopg

EXTRA_HINT = "pip install 'sluice[postgres]'"
#: From this many rows on, :meth:`PostgresDatabase.append` copies them (``COPY``).
COPY_ROWS = 64
#: The channel writers NOTIFY on each commit and watchers LISTEN on.
CHANNEL = "sluice_history"
_ENV = re.compile(r"\{env\.([A-Za-z_][A-Za-z0-9_]*)\}")
_PASSWORD = re.compile(r"(://[^:/@?#]*):[^@/?#]*@")

#: Every writer of a history takes this advisory lock to migrate it: two processes opening a new
#: history at once create the tables one after the other.
_MIGRATION_LOCK = 0x5100_1CE0


class HistoryUrlError(Exception):
    """The URL cannot be used (psycopg missing, an unset ``{env.X}``, a refused connection)."""


def shown(url: str) -> str:
    """``url`` with any password in it masked."""
    return _PASSWORD.sub(r"\1:***@", url)


def render(url: str) -> str:
    """``url`` with its ``{env.X}`` placeholders filled from the environment."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise HistoryUrlError(f"{shown(url)}: {{env.{name}}} is not set in the environment")
        return os.environ[name]

    return _ENV.sub(value, url)


def _translate(sql: str) -> str:
    """SQLite's ``?`` parameters to psycopg's ``%s`` (a literal ``%`` doubled first)."""
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresDatabase:
    """One psycopg connection in autocommit mode; :meth:`transaction` is one transaction."""

    kind = "postgresql"
    lock_row = " FOR SHARE"  # a takeover's write to the lease row waits for our commit
    # Two acquirers of a missing lease row would both insert it (one failing on the key).
    lock_lease = "LOCK TABLE lease IN SHARE ROW EXCLUSIVE MODE"
    #: The recorder writes its batch this often: watchers on other machines are told of each
    #: commit (NOTIFY), so the batch interval is what they wait for.
    flush_seconds = 0.05
    group_commit = True

    def __init__(self, conn: psycopg.Connection[Any], url: str):
        self.conn = conn
        self.url = url
        self._sql: dict[str, str] = {}
        #: The pipeline of the transaction running now (None: none, or a COPY left it).
        self._pipeline: contextlib.ExitStack | None = None
        self._in_transaction = False

    @classmethod
    def connect(cls, url: str) -> PostgresDatabase:
        try:
            import psycopg
        except ImportError:
            raise HistoryUrlError(
                f"{shown(url)}: a PostgreSQL history needs psycopg: {EXTRA_HINT}"
            ) from None
        try:
            conn = psycopg.connect(render(url), autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise HistoryUrlError(f"{shown(url)}: cannot connect: {reason}") from None
        return cls(conn, url)

    def translate(self, sql: str) -> str:
        text = self._sql.get(sql)
        if text is None:
            text = self._sql[sql] = _translate(sql)
        return text

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:  # a psycopg cursor
        self._pipelined()
        return self.conn.execute(self.translate(sql), params)  # type: ignore[arg-type]

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._pipelined()
        with self.conn.cursor() as cursor:
            cursor.executemany(self.translate(sql), rows)  # type: ignore[arg-type]

    def append(self, sql: str, table: str, columns: str, rows: Sequence[Sequence[Any]]) -> None:
        """Many rows by ``COPY`` (several times faster than one ``INSERT`` each): the pipeline
        is synced first (COPY cannot run in one; the statements before it run now), and the
        statements after it are pipelined again — two round trips more than the pipeline."""
        if len(rows) < COPY_ROWS or not self._in_transaction:
            self.executemany(sql, rows)
            return
        if self._pipeline is not None:
            pipeline, self._pipeline = self._pipeline, None
            pipeline.close()  # the sync: an error of what was sent (the fence) raises here
        with (
            self.conn.cursor() as cursor,
            cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)

    def _pipelined(self) -> None:
        """Inside a transaction a COPY left: pipeline the statements again."""
        if self._in_transaction and self._pipeline is None:
            pipeline = contextlib.ExitStack()
            pipeline.enter_context(self.conn.pipeline())
            self._pipeline = pipeline

    def query(self, sql: str, params: Sequence[Any] = ()) -> Iterator[dict[str, Any]]:
        from psycopg.rows import dict_row

        with self.conn.cursor(row_factory=dict_row) as cursor:
            cursor.execute(self.translate(sql), params)  # type: ignore[arg-type]
            rows = cursor.fetchall()
        yield from rows

    def insert(self, sql: str, params: Sequence[Any]) -> int:
        return int(self.execute(sql + " RETURNING id", params).fetchone()[0])

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        import psycopg
        from psycopg.pq import TransactionStatus

        conn = self.conn
        if conn.broken or conn.closed:
            raise ConnectionLost(f"{shown(self.url)}: the connection is closed")
        if conn.info.transaction_status != TransactionStatus.IDLE:
            yield
            return
        try:
            # Pipelined: BEGIN, the statements and COMMIT are sent without waiting for each
            # one's result, and read back at one sync when the block ends — a transaction that
            # reads nothing (the recorder's: the fence is a server-side check) is one round trip.
            # (psycopg's own transaction() in a pipeline syncs twice.)
            # A COPY (:meth:`append`) leaves the pipeline and the statements after it start
            # another one.
            try:
                self._in_transaction = True
                self._pipelined()
                try:
                    conn.execute("BEGIN")
                    yield
                    self._pipelined()
                    conn.execute("COMMIT")
                except BaseException:
                    pipeline, self._pipeline = self._pipeline, None
                    if pipeline is not None:
                        pipeline.__exit__(*sys.exc_info())
                    raise
                pipeline, self._pipeline = self._pipeline, None
                assert pipeline is not None
                pipeline.close()
            except BaseException:
                self._in_transaction = False
                self._rollback()
                raise
            finally:
                self._in_transaction = False
        except psycopg.Error as exc:
            if exc.sqlstate == FENCE_SQLSTATE:
                raise FenceFailed(str(exc)) from None
            if not isinstance(exc, psycopg.OperationalError):
                raise
            if conn.broken or conn.closed:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "closed"
                raise ConnectionLost(f"{shown(self.url)}: {reason}") from None
            raise

    def _rollback(self) -> None:
        """After a failed transaction: end it, if the connection still can."""
        import psycopg
        from psycopg.pq import TransactionStatus

        conn = self.conn
        if conn.broken or conn.closed:
            return
        if conn.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
            with contextlib.suppress(psycopg.Error):
                conn.execute("ROLLBACK")

    def reconnect(self, patience: float) -> bool:
        import psycopg

        deadline = time.monotonic() + patience
        delay = 0.1
        while True:
            try:
                conn = psycopg.connect(render(self.url), autocommit=True, connect_timeout=5)
            except psycopg.OperationalError:
                if time.monotonic() + delay > deadline:
                    return False
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = conn
            return True

    atomic = transaction

    def fence(self, estate: str, epoch: int | None, host: str, pid: int) -> bool:
        self.execute("SELECT sluice_fence(?, ?, ?, ?)", [estate, epoch, host, pid])
        return True  # checked by the server: a lost lease aborts the transaction (FenceFailed)

    def has_history(self) -> bool:
        return self.execute("SELECT to_regclass('schema_version')").fetchone()[0] is not None

    def migrate(self, version: int) -> int:
        """Create the tables (schema ``version``) if the database has none; the version found."""
        with self.transaction():
            self.execute("SELECT pg_advisory_xact_lock(?)", [_MIGRATION_LOCK])
            self.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            current = self.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
            if current >= version:
                return int(current)
            for step in range(max(current + 1, PG_FIRST_VERSION), version + 1):
                for statement in PG_MIGRATIONS[step].split(";"):
                    if statement.strip():
                        self.execute(statement)
                for statement in PG_FUNCTIONS.get(step, ()):
                    self.conn.execute(statement)  # as it is: no ? to translate
                self.execute("INSERT INTO schema_version (version) VALUES (?)", [step])
        return version

    def notify(self) -> None:
        """Tell every watcher that this transaction wrote (delivered when it commits)."""
        self.conn.execute(f"NOTIFY {CHANNEL}")

    def listen(self) -> Listener:
        """A connection of its own that hears every writer's :meth:`notify`."""
        import psycopg

        conn = psycopg.connect(render(self.url), autocommit=True, connect_timeout=10)
        conn.execute(f"LISTEN {CHANNEL}")
        return Listener(conn)

    def close(self) -> None:
        self.conn.close()


class Listener:
    """Waits for writers' notifications (``LISTEN``), on its own connection."""

    def __init__(self, conn: psycopg.Connection[Any]):
        self.conn = conn

    def wait(self, timeout: float) -> bool:
        """Block until a writer committed (True) or ``timeout`` passed (False); every
        notification already queued is taken with the first."""
        heard = False
        for _ in self.conn.notifies(timeout=timeout, stop_after=1):
            heard = True
        if heard:  # drain what else is queued, without waiting
            for _ in self.conn.notifies(timeout=0):
                pass
        return heard

    def close(self) -> None:
        self.conn.close()


def open_url(url: str, *, create: bool, version: int) -> PostgresDatabase:
    """Connect to the history at ``url`` and bring its schema to ``version`` (one line on any
    problem: :class:`HistoryUrlError`)."""
    db = PostgresDatabase.connect(url)  # first: it says so when psycopg is missing
    import psycopg

    try:
        if not create and not db.has_history():
            raise HistoryUrlError(
                f"{shown(url)}: no history yet (no rollout has run on this estate)"
            )
        current = db.migrate(version)
        if current > version:
            raise HistoryUrlError(
                f"{shown(url)}: written by a newer sluice (schema {current} > {version})"
            )
    except psycopg.Error as exc:
        db.close()
        raise HistoryUrlError(f"{shown(url)}: not a usable sluice history ({exc})") from None
    except BaseException:
        db.close()
        raise
    return db
