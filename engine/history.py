"""The SQLite history: every event, apply, sample and operator action; the version ledger; the lease.

One :class:`History` owns the connection (sqlite-utils over a connection in autocommit mode, so
``db.atomic()`` is one explicit transaction). The file is created 0600 in a 0700 directory, in WAL
mode. Rows are appended, never rewritten — except that an apply row and a rollout row are
*completed* (finished, outcome) once. Migrations run forward from the recorded schema version.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from engine.events import _KINDS as EVENT_KINDS  # kind → class (events.py has no public name)
from engine.events import Event

SCHEMA_VERSION = 2

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

MIGRATIONS = {1: _SCHEMA_V1, 2: _SCHEMA_V2}

#: Wave outcomes that count as done (a resumed rollout starts after them).
DONE_OUTCOMES = ("passed", "approved", "bypassed", "skipped")

#: ``(seq, ts, kind, data)``: one row of the ``events`` table.
EventRow = tuple[int, float, str, str]


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


def decode_event(row: EventRow) -> Event | None:
    """One row → its event (``None`` for a kind this sluice does not know)."""
    seq, ts, kind, data = row
    return _decode(seq, ts, kind, json.loads(data))


def decode_events(rows: Sequence[EventRow]) -> list[Event]:
    """Rows → events, in order. The JSON of all rows is parsed in one ``json.loads`` call (half
    the cost of one call per row)."""
    payloads = json.loads("[" + ",".join(row[3] for row in rows) + "]") if rows else []
    events = []
    for (seq, ts, kind, _), payload in zip(rows, payloads, strict=True):
        event = _decode(seq, ts, kind, payload)
        if event is not None:
            events.append(event)
    return events


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
            if not path.exists():
                if not create:
                    raise HistoryError(
                        f"{path}: no history yet (no rollout has run on this estate)"
                    )
                _create_private(path)
            conn = sqlite3.connect(
                path, isolation_level=None, timeout=10.0, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
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

    def event_rows(self, rollout_id: int) -> list[EventRow]:
        """The raw ``(seq, ts, kind, data)`` rows of a rollout's events, in order (undecoded)."""
        return self.db.execute(
            "SELECT seq, ts, kind, data FROM events WHERE rollout_id = ? ORDER BY seq",
            [rollout_id],
        ).fetchall()

    def events(self, rollout_id: int) -> list[Event]:
        """Every recorded event of the rollout, in order (kinds this sluice does not know are skipped)."""
        return decode_events(self.event_rows(rollout_id))

    def iter_event_dicts(self, rollout_id: int) -> Iterator[dict[str, Any]]:
        for seq, ts, kind, data in self.event_rows(rollout_id):
            yield _event_dict(seq, ts, kind, json.loads(data))

    def last_seq(self, rollout_id: int) -> int:
        return int(
            self.db.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM events WHERE rollout_id = ?", [rollout_id]
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
            self.db.query("SELECT * FROM samples WHERE rollout_id = ? ORDER BY rowid", [rollout_id])
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
