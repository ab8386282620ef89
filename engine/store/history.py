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
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sluice.engine.model.estate import is_history_url
from sluice.engine.rollout.events import (
    _KINDS as EVENT_KINDS,
)  # kind → class (events.py has no public name)
from sluice.engine.rollout.events import Event, SampleTaken
from sluice.engine.rollout.state import RESUMABLE
from sluice.engine.store.backend import Database, FenceFailed, SqliteDatabase, wal_mode
from sluice.engine.store.lease import LeaseLost
from sluice.engine.store.readonly import ReadProblem, not_writable, open_readonly
from sluice.engine.store.schema import (  # the schema's names are known from here too
    MIGRATIONS,
    PAGE_SIZE,
    SAMPLE_COLUMNS,
    SCHEMA_VERSION,
    WAL_CHECKPOINT_BYTES,
)

if TYPE_CHECKING:
    from sluice.engine.store.lease import Lease

#: Wave outcomes that count as done (a resumed rollout starts after them).
DONE_OUTCOMES = ("passed", "approved", "bypassed", "skipped")

#: One recorded event, undecoded: ``(seq, ts, kind, data)`` with its other fields as JSON in
#: ``data`` (an ``event_log`` row), or ``(seq, ts, "sample", wave, check, target, phase, value,
#: baseline, outcome, reason)`` (a ``samples`` row). Either way ``row[0]`` is the seq, ``row[1]``
#: the timestamp and ``row[2]`` the kind.
EventRow = tuple[Any, ...]
_SAMPLE_FIELDS = ("wave", "check", "target", "phase", "value", "baseline", "outcome", "reason")


def _tuplify(value: Any) -> Any:
    """JSON arrays back to the tuples events hold (as :func:`sluice.engine.rollout.events.event_from_dict`)."""
    return tuple(_tuplify(v) for v in value) if type(value) is list else value


def _event_dict(seq: int, ts: float, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The :meth:`Event.to_dict` form of a row (older rows also hold seq/ts/kind in ``data``)."""
    return {"kind": kind, "seq": seq, "ts": ts, **payload}


class _Decoder:
    """Rebuilds events from rows; the class and field names of each kind are looked up once."""

    def __init__(self) -> None:
        self._kinds: dict[str, tuple[type[Event], frozenset[str]] | None] = {}

    def _kind(self, kind: str) -> tuple[type[Event], frozenset[str]] | None:
        if kind not in self._kinds:
            cls = EVENT_KINDS.get(kind)
            self._kinds[kind] = (
                None
                if cls is None
                else (cls, frozenset(f.name for f in dataclasses.fields(cls)) - {"seq", "ts"})
            )
        return self._kinds[kind]

    def __call__(self, seq: int, ts: float, kind: str, payload: dict[str, Any]) -> Event | None:
        known = self._kind(kind)
        if known is None:  # written by a newer sluice, or an event kind since removed
            return None
        cls, names = known
        values = {k: _tuplify(v) for k, v in payload.items() if k in names}
        return cls(seq=seq, ts=ts, **values)


def known_kind(kind: str) -> bool:
    """Whether events of ``kind`` can be decoded by this sluice."""
    return kind in EVENT_KINDS


def _sample(row: EventRow) -> SampleTaken:
    seq, ts, _, wave, check, target, phase, value, baseline, outcome, reason = row
    return SampleTaken(
        seq=seq, ts=ts, wave=wave, check=check, target=target, phase=phase, value=value,
        baseline=baseline, outcome=outcome, reason=reason,
    )  # fmt: skip


def decode_event(row: EventRow) -> Event | None:
    """One row → its event (``None`` for a kind this sluice does not know)."""
    if len(row) != 4:
        return _sample(row)
    seq, ts, kind, data = row
    return _decode(seq, ts, kind, json.loads(data))


def decode_events(rows: Sequence[EventRow]) -> list[Event]:
    """Rows → events, in order. The JSON of all rows is parsed in one ``json.loads`` call (half
    the cost of one call per row); samples are built from their columns."""
    texts = [row[3] for row in rows if len(row) == 4]
    payloads = iter(json.loads("[" + ",".join(texts) + "]") if texts else [])
    events: list[Event] = []
    for row in rows:
        if len(row) != 4:
            events.append(_sample(row))
            continue
        event = _decode(row[0], row[1], row[2], next(payloads))
        if event is not None:
            events.append(event)
    return events


def row_dict(row: EventRow) -> dict[str, Any]:
    """One row → the :meth:`Event.to_dict` form of its event (unknown kinds too)."""
    if len(row) != 4:
        fields = dict(zip(_SAMPLE_FIELDS, row[3:], strict=True))
        return {"kind": row[2], "seq": row[0], "ts": row[1], **fields}
    seq, ts, kind, data = row
    return _event_dict(seq, ts, kind, json.loads(data))


_decode = _Decoder()


class HistoryError(Exception):
    """The history file cannot be opened or is not a sluice history."""


class HistoryNotWritable(HistoryError):
    """The history exists but this process cannot write it (a read-only file or directory,
    another user's, an immutable file, a full disk): reading it still works."""


@dataclass(frozen=True)
class RolloutRecord:
    id: int
    estate: str
    module: str
    from_versions: str
    version: str
    actor: str
    host: str
    kind: str
    started: float
    finished: float | None
    outcome: str
    exit_code: int | None
    summary: str | None
    waves_total: int
    waves_done: int
    plan: dict[str, Any]

    @property
    def duration(self) -> float | None:
        return None if self.finished is None else self.finished - self.started

    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "plan"}
        data["duration"] = self.duration
        return data


def _create_private(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


class History:
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

    @property
    def schema_version(self) -> int:
        return int(self.db.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])

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

    # ------------------------------------------------------------------ reading

    def _record(self, row: dict[str, Any]) -> RolloutRecord:
        # A rollback's wave is done when it is rolled back; a rollout's when it passed its gate.
        outcomes = DONE_OUTCOMES + (("rolled_back",) if row["kind"] == "rollback" else ())
        done = self.db.execute(
            f"SELECT COUNT(*) FROM waves WHERE rollout_id = ? AND outcome IN ({', '.join('?' * len(outcomes))})",
            [row["id"], *outcomes],
        ).fetchone()[0]
        return RolloutRecord(
            id=row["id"],
            estate=row["estate"],
            module=row["module"],
            from_versions=row["from_versions"],
            version=row["version"],
            actor=row["actor"],
            host=row["host"],
            kind=row["kind"],
            started=row["started"],
            finished=row["finished"],
            outcome=row["outcome"],
            exit_code=row["exit_code"],
            summary=row["summary"],
            waves_total=row["waves_total"],
            waves_done=int(done),
            plan=json.loads(row["plan"]),
        )

    def rollouts(self, limit: int | None = None) -> list[RolloutRecord]:
        """Past rollouts, newest first."""
        sql = "SELECT * FROM rollouts ORDER BY id DESC" + (f" LIMIT {int(limit)}" if limit else "")
        return [self._record(r) for r in self.db.query(sql)]

    def rollout(self, rollout_id: int) -> RolloutRecord | None:
        rows = list(self.db.query("SELECT * FROM rollouts WHERE id = ?", [rollout_id]))
        return self._record(rows[0]) if rows else None

    def unfinished(self) -> list[RolloutRecord]:
        """Rollouts that can be resumed: left running by a dead process, stopped, or crashed."""
        marks = ", ".join("?" * len(RESUMABLE))
        rows = self.db.query(
            f"SELECT * FROM rollouts WHERE outcome IN ({marks}) ORDER BY id DESC", RESUMABLE
        )
        return [self._record(r) for r in rows]

    def event_rows(self, rollout_id: int, after: int = 0) -> list[EventRow]:
        """The rows of a rollout's events (:data:`EventRow`) with seq > ``after``, in order, undecoded."""
        rows: list[EventRow] = self.db.execute(
            "SELECT seq, ts, kind, data FROM event_log WHERE rollout_id = ? AND seq > ? "
            "ORDER BY seq",
            [rollout_id, after],
        ).fetchall()
        samples = self.db.execute(
            "SELECT seq, ts, 'sample', wave, check_name, target, phase, value, baseline, outcome, "
            "reason FROM samples WHERE rollout_id = ? AND seq > ? ORDER BY seq",
            [rollout_id, after],
        ).fetchall()
        if samples:
            rows += samples
            rows.sort(key=itemgetter(0))  # two sorted runs: a linear merge
        return rows

    def events(self, rollout_id: int, after: int = 0) -> list[Event]:
        """The rollout's recorded events with seq > ``after``, in order (kinds this sluice does not
        know are skipped)."""
        return decode_events(self.event_rows(rollout_id, after))

    def last_seq(self, rollout_id: int) -> int:
        return int(
            self.db.execute(
                "SELECT CASE WHEN a > b THEN a ELSE b END FROM (SELECT "
                "COALESCE((SELECT MAX(seq) FROM event_log WHERE rollout_id = ?), 0) AS a, "
                "COALESCE((SELECT MAX(seq) FROM samples WHERE rollout_id = ?), 0) AS b) AS seqs",
                [rollout_id, rollout_id],
            ).fetchone()[0]
        )

    def applies(self, rollout_id: int) -> list[dict[str, Any]]:
        return list(
            self.db.query("SELECT * FROM applies WHERE rollout_id = ? ORDER BY id", [rollout_id])
        )

    def waves(self, rollout_id: int) -> list[dict[str, Any]]:
        rows = list(
            self.db.query("SELECT * FROM waves WHERE rollout_id = ? ORDER BY number", [rollout_id])
        )
        for row in rows:
            row["reasons"] = json.loads(row["reasons"]) if row["reasons"] else []
        return rows

    def samples(self, rollout_id: int) -> list[dict[str, Any]]:
        return list(
            self.db.query(
                f"SELECT {', '.join(SAMPLE_COLUMNS)} FROM samples WHERE rollout_id = ? "
                "ORDER BY rowid",
                [rollout_id],
            )
        )

    def operator_actions(self, rollout_id: int) -> list[dict[str, Any]]:
        return list(
            self.db.query(
                "SELECT rollout_id, ts, actor, action, reason, wave, target FROM operator_actions "
                "WHERE rollout_id = ? ORDER BY rowid",
                [rollout_id],
            )
        )

    def ledger(self, module: str, *, before_rollout: int | None = None) -> dict[str, str]:
        """Each target's version of ``module`` now (or just before rollout ``before_rollout``)."""
        sql = "SELECT target, version FROM ledger WHERE module = ?"
        params: list[Any] = [module]
        if before_rollout is not None:
            sql += " AND rollout_id < ?"
            params.append(before_rollout)
        current: dict[str, str] = {}
        for target, version in self.db.execute(sql + " ORDER BY id", params):
            current[target] = version
        return current

    def ledger_entries(self, module: str | None = None) -> list[dict[str, Any]]:
        if module is None:
            return list(self.db.query("SELECT * FROM ledger ORDER BY id"))
        return list(self.db.query("SELECT * FROM ledger WHERE module = ? ORDER BY id", [module]))

    # ------------------------------------------------------------------ one target (the console's detail)

    def target_ledger(self, target: str) -> list[dict[str, Any]]:
        """Every module's ledger entries for ``target``, oldest first."""
        return list(self.db.query("SELECT * FROM ledger WHERE target = ? ORDER BY id", [target]))

    def target_last_apply(self, target: str) -> dict[str, Any] | None:
        """The newest recorded apply (or rollback) of ``target``, in any rollout."""
        rows = list(
            self.db.query(
                "SELECT * FROM applies WHERE target = ? ORDER BY id DESC LIMIT 1", [target]
            )
        )
        return rows[0] if rows else None

    def target_samples(self, rollout_id: int, target: str) -> list[dict[str, Any]]:
        """``target``'s samples in rollout ``rollout_id``, in the order they were taken."""
        return list(
            self.db.query(
                f"SELECT {', '.join(SAMPLE_COLUMNS)} FROM samples WHERE rollout_id = ? "
                "AND target = ? ORDER BY rowid",
                [rollout_id, target],
            )
        )
