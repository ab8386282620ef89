"""What :class:`~sluice.engine.store.history.History` reads back about rollouts: their records,
events, applies, waves, samples and operator actions (the ledger: :mod:`.ledger`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sluice.engine.rollout.events import Event
from sluice.engine.rollout.state import RESUMABLE
from sluice.engine.store.backend import Database
from sluice.engine.store.event_rows import EventRow, decode_events
from sluice.engine.store.schema import SAMPLE_COLUMNS

#: Wave outcomes that count as done (a resumed rollout starts after them).
DONE_OUTCOMES = ("passed", "approved", "bypassed", "skipped")


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


class RolloutReads:
    """The reading half of :class:`~sluice.engine.store.history.History` (a mixin over its ``db``)."""

    db: Database

    def _record(self, row: dict[str, Any], plan: bool = True) -> RolloutRecord:
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
            plan=json.loads(row["plan"]) if plan else {},
        )

    def rollouts(self, limit: int | None = None, *, plans: bool = True) -> list[RolloutRecord]:
        """Past rollouts, newest first; ``plans=False``: without their plans (``plan`` empty —
        decoding a 1,000-target plan is most of such a read)."""
        sql = "SELECT * FROM rollouts ORDER BY id DESC" + (f" LIMIT {int(limit)}" if limit else "")
        return [self._record(r, plans) for r in self.db.query(sql)]

    def rollout(self, rollout_id: int, *, plan: bool = True) -> RolloutRecord | None:
        rows = list(self.db.query("SELECT * FROM rollouts WHERE id = ?", [rollout_id]))
        return self._record(rows[0], plan) if rows else None

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
