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

import dataclasses
import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.events import _KINDS as EVENT_KINDS  # kind → class (events.py has no public name)
from engine.events import Event, SampleTaken

if TYPE_CHECKING:  # imported when a history is opened: it is a tenth of a second at start-up
    import sqlite_utils

SCHEMA_VERSION = 3

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rollouts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    estate TEXT NOT NULL, module TEXT NOT NULL, from_versions TEXT NOT NULL, version TEXT NOT NULL,
    actor TEXT NOT NULL, host TEXT NOT NULL, kind TEXT NOT NULL DEFAULT 'rollout',
    started REAL NOT NULL, finished REAL, outcome TEXT NOT NULL DEFAULT 'running', exit_code INTEGER,
    summary TEXT, waves_total INTEGER NOT NULL, plan TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS waves (
    rollout_id INTEGER NOT NULL, number INTEGER NOT NULL, name TEXT NOT NULL, channel TEXT NOT NULL,
    started REAL, finished REAL, outcome TEXT, verdict TEXT, reasons TEXT,
    PRIMARY KEY (rollout_id, number)
);
CREATE TABLE IF NOT EXISTS applies (
    id INTEGER PRIMARY KEY AUTOINCREMENT, rollout_id INTEGER NOT NULL, wave INTEGER NOT NULL,
    target TEXT NOT NULL, action TEXT NOT NULL, version TEXT NOT NULL, from_version TEXT NOT NULL,
    command TEXT, started REAL NOT NULL, finished REAL, outcome TEXT NOT NULL DEFAULT 'started',
    reason TEXT, duration REAL, output_tail TEXT
);
CREATE INDEX IF NOT EXISTS applies_rollout ON applies (rollout_id, target);
CREATE TABLE IF NOT EXISTS events (
    rollout_id INTEGER NOT NULL, seq INTEGER NOT NULL, ts REAL NOT NULL, kind TEXT NOT NULL,
    data TEXT NOT NULL, PRIMARY KEY (rollout_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS samples (
    rollout_id INTEGER NOT NULL, wave INTEGER NOT NULL, check_name TEXT NOT NULL, target TEXT NOT NULL,
    phase TEXT NOT NULL, ts REAL NOT NULL, value REAL, baseline REAL, outcome TEXT NOT NULL, reason TEXT
);
CREATE INDEX IF NOT EXISTS samples_rollout ON samples (rollout_id, wave);
CREATE TABLE IF NOT EXISTS operator_actions (
    rollout_id INTEGER NOT NULL, ts REAL NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    reason TEXT, wave INTEGER, target TEXT
);
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT, target TEXT NOT NULL, module TEXT NOT NULL,
    version TEXT NOT NULL, since REAL NOT NULL, rollout_id INTEGER NOT NULL, action TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_target ON ledger (module, target, id);
"""

# v2: the driver lease and its audit trail.
_SCHEMA_V2 = """
CREATE TABLE IF NOT EXISTS lease (
    estate TEXT PRIMARY KEY, user TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL,
    acquired REAL NOT NULL, heartbeat REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS lease_log (
    ts REAL NOT NULL, estate TEXT NOT NULL, action TEXT NOT NULL, holder TEXT NOT NULL, previous TEXT
);
"""

# v3, for the recorder's speed (the rows a rollout writes, and their meaning, are the same):
# - ``applies`` and ``ledger`` lose AUTOINCREMENT: each insert also rewrote ``sqlite_sequence``, a
#   page more in every apply's own commit. Rows are never deleted from either, so ids are still
#   never reused; the rows are copied as they are, ids included.
# - a sample is stored once, in ``samples`` (it was also a JSON ``events`` row): the rows gain the
#   event's ``seq``, the other events move to ``event_log``, and ``events`` becomes a view of the
#   whole stream. Older rollouts keep their sample events in ``event_log`` and their samples rows
#   have no ``seq``, so the view (and History.event_rows) still holds each event once.
#   ``%!.18g``: SQLite's formatting needs 18 digits (17 are not always enough with it) for the
#   JSON to read back as the same double.
_SCHEMA_V3 = """
CREATE TABLE applies_v3 (
    id INTEGER PRIMARY KEY, rollout_id INTEGER NOT NULL, wave INTEGER NOT NULL,
    target TEXT NOT NULL, action TEXT NOT NULL, version TEXT NOT NULL, from_version TEXT NOT NULL,
    command TEXT, started REAL NOT NULL, finished REAL, outcome TEXT NOT NULL DEFAULT 'started',
    reason TEXT, duration REAL, output_tail TEXT
);
INSERT INTO applies_v3 (id, rollout_id, wave, target, action, version, from_version, command,
    started, finished, outcome, reason, duration, output_tail)
    SELECT id, rollout_id, wave, target, action, version, from_version, command, started,
    finished, outcome, reason, duration, output_tail FROM applies ORDER BY id;
DROP TABLE applies;
ALTER TABLE applies_v3 RENAME TO applies;
CREATE INDEX applies_rollout ON applies (rollout_id, target);
CREATE TABLE ledger_v3 (
    id INTEGER PRIMARY KEY, target TEXT NOT NULL, module TEXT NOT NULL,
    version TEXT NOT NULL, since REAL NOT NULL, rollout_id INTEGER NOT NULL, action TEXT NOT NULL
);
INSERT INTO ledger_v3 (id, target, module, version, since, rollout_id, action)
    SELECT id, target, module, version, since, rollout_id, action FROM ledger ORDER BY id;
DROP TABLE ledger;
ALTER TABLE ledger_v3 RENAME TO ledger;
CREATE INDEX ledger_target ON ledger (module, target, id);
ALTER TABLE events RENAME TO event_log;
ALTER TABLE samples ADD COLUMN seq INTEGER;
DROP INDEX IF EXISTS samples_rollout;
CREATE UNIQUE INDEX IF NOT EXISTS samples_seq ON samples (rollout_id, seq);
CREATE VIEW IF NOT EXISTS events (rollout_id, seq, ts, kind, data) AS
    SELECT rollout_id, seq, ts, kind, data FROM event_log
    UNION ALL
    SELECT rollout_id, seq, ts, 'sample', json_object(
        'wave', wave, 'check', check_name, 'target', target, 'phase', phase,
        'value', CASE WHEN value IS NULL THEN NULL ELSE json(printf('%!.18g', value)) END,
        'baseline', CASE WHEN baseline IS NULL THEN NULL ELSE json(printf('%!.18g', baseline)) END,
        'outcome', outcome, 'reason', reason
    ) FROM samples WHERE seq IS NOT NULL
"""

MIGRATIONS = {1: _SCHEMA_V1, 2: _SCHEMA_V2, 3: _SCHEMA_V3}

#: The ``samples`` columns a reader sees (``seq`` is the stream's business, not the report's).
SAMPLE_COLUMNS = (
    "rollout_id", "wave", "check_name", "target", "phase", "ts", "value", "baseline", "outcome",
    "reason",
)  # fmt: skip

#: The page size of a new file. A commit writes every page it changes, whole, to the WAL, and each
#: apply's start and finish is a commit of its own changing 2–4 pages: at SQLite's default of 4 KB
#: that is ~25 KB of WAL per apply for ~300 bytes of rows, every byte of it fsynced at the next
#: checkpoint. 1 KB pages write a quarter of that; the batched rows fill pages just as densely.
PAGE_SIZE = 1024
#: The WAL is checkpointed into the file (two fsyncs) when it holds this much (SQLite's default is
#: 1,000 pages). Fewer, larger checkpoints also copy a page rewritten by many commits only once.
WAL_CHECKPOINT_BYTES = 16 * 1024 * 1024

#: Wave outcomes that count as done (a resumed rollout starts after them).
DONE_OUTCOMES = ("passed", "approved", "bypassed", "skipped")

#: One recorded event, undecoded: ``(seq, ts, kind, data)`` with its other fields as JSON in
#: ``data`` (an ``event_log`` row), or ``(seq, ts, "sample", wave, check, target, phase, value,
#: baseline, outcome, reason)`` (a ``samples`` row). Either way ``row[0]`` is the seq, ``row[1]``
#: the timestamp and ``row[2]`` the kind.
EventRow = tuple[Any, ...]
_SAMPLE_FIELDS = ("wave", "check", "target", "phase", "value", "baseline", "outcome", "reason")


def _tuplify(value: Any) -> Any:
    """JSON arrays back to the tuples events hold (as :func:`engine.events.event_from_dict`)."""
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

    def __init__(self, db: sqlite_utils.Database, path: Path):
        self.db = db
        self.path = path

    @classmethod
    def open(cls, path: Path, *, create: bool = True) -> History:
        """Open (creating 0600 if needed) and migrate the history at ``path``."""
        path = Path(path)
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
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_BYTES // page_size}")
            conn.execute(f"PRAGMA journal_size_limit={WAL_CHECKPOINT_BYTES}")
            import sqlite_utils  # here, not at import: most sluice commands never open a history

            history = cls(sqlite_utils.Database(conn), path)
            history._migrate()
        except sqlite3.DatabaseError as exc:
            raise HistoryError(f"{path}: not a usable sluice history ({exc})") from None
        except OSError as exc:
            raise HistoryError(f"{path}: cannot open the history: {exc.strerror}") from None
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                os.chmod(side, 0o600)
        return history

    def _migrate(self) -> None:
        with self.db.atomic():
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
        self.db.conn.close()

    # ------------------------------------------------------------------ writing

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
        with self.db.atomic():
            cursor = self.db.execute(
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
        return int(cursor.lastrowid or 0)

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
        """Rollouts that can be resumed: left running by a dead process, or stopped."""
        rows = self.db.query(
            "SELECT * FROM rollouts WHERE outcome IN ('running', 'stopped') ORDER BY id DESC"
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

    def iter_event_dicts(self, rollout_id: int) -> Iterator[dict[str, Any]]:
        for row in self.event_rows(rollout_id):
            yield row_dict(row)

    def last_seq(self, rollout_id: int) -> int:
        return int(
            self.db.execute(
                "SELECT MAX(COALESCE((SELECT MAX(seq) FROM event_log WHERE rollout_id = :id), 0), "
                "COALESCE((SELECT MAX(seq) FROM samples WHERE rollout_id = :id), 0))",
                {"id": rollout_id},
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
                "SELECT * FROM operator_actions WHERE rollout_id = ? ORDER BY rowid", [rollout_id]
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
