"""The pipeline of a PostgreSQL write transaction, which a ``COPY`` can leave.

A transaction is pipelined: ``BEGIN``, its statements and ``COMMIT`` are sent without waiting for
each one's result, and read back at one sync — one round trip. ``COPY`` (several times faster
than one ``INSERT`` per row for many rows) cannot run in a pipeline: :meth:`Pipelined.append`
syncs it first (the statements sent so far run; an error among them, the fence's, raises there),
copies, and the statements after it are pipelined again — two round trips more.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

#: From this many rows on, :meth:`Pipelined.append` copies them (``COPY``).
COPY_ROWS = 64


class Pipelined:
    """Mixed into :class:`~sluice.engine.store.postgres.PostgresDatabase`."""

    conn: psycopg.Connection[Any]
    #: The pipeline of the transaction running now (None: none, or a COPY left it).
    _pipeline: contextlib.ExitStack | None = None
    _in_transaction = False

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def pipelined(self) -> Iterator[None]:
        """The block of one transaction, pipelined (again after each COPY in it)."""
        self._in_transaction = True
        try:
            self.resume()
            try:
                yield
                self.resume()
            except BaseException:
                pipeline, self._pipeline = self._pipeline, None
                if pipeline is not None:
                    pipeline.__exit__(*sys.exc_info())
                raise
            pipeline, self._pipeline = self._pipeline, None
            assert pipeline is not None
            pipeline.close()
        finally:
            self._in_transaction = False

    def resume(self) -> None:
        """In a transaction a COPY left: pipeline the statements again."""
        if self._in_transaction and self._pipeline is None:
            pipeline = contextlib.ExitStack()
            pipeline.enter_context(self.conn.pipeline())
            self._pipeline = pipeline

    def append(self, sql: str, table: str, columns: str, rows: Sequence[Sequence[Any]]) -> None:
        """Many rows by ``COPY``, few (or outside a transaction) by ``sql``."""
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
