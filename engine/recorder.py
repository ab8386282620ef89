"""Records a rollout's event stream into the history, in batches, durable where it matters.

The recorder is a synchronous bus listener. Most events are buffered and written in one
transaction per batch (on a short timer, or when the buffer fills) — off the hot path. An apply's
start and finish, operator actions, gate verdicts and the end of the rollout are written at once,
in the listener call, so an apply is durably *started* before its executor launches anything:
that is what makes resume after ``kill -9`` safe.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict, deque
from typing import Any

from engine.events import (
    ApplyFinished,
    ApplyOutput,
    ApplyStarted,
    Event,
    GateEvaluated,
    OperatorAction,
    RolloutFinished,
    SampleTaken,
    WaveFinished,
    WaveStarted,
)
from engine.history import History

#: Events written the moment they happen (the rest wait for the next batch).
DURABLE = (
    ApplyStarted,
    ApplyFinished,
    OperatorAction,
    GateEvaluated,
    WaveStarted,
    WaveFinished,
    RolloutFinished,
)
BATCH_SIZE = 2000
FLUSH_SECONDS = 0.25
TAIL_LINES = 20


class Recorder:
    """Subscribe with ``bus.listen(recorder)``; call :meth:`flush` at the end."""

    def __init__(self, history: History, rollout_id: int, module: str):
        self.history = history
        self.rollout_id = rollout_id
        self.module = module
        self._events: list[tuple[Any, ...]] = []
        self._samples: list[tuple[Any, ...]] = []
        self._tails: dict[str, deque[str]] = defaultdict(lambda: deque(maxlen=TAIL_LINES))
        self._apply_ids: dict[str, int] = {}
        self._timer: asyncio.TimerHandle | None = None

    def __call__(self, event: Event) -> None:
        data = event.to_dict()
        self._events.append(
            (self.rollout_id, event.seq, event.ts, event.kind, json.dumps(data, default=str))
        )
        if isinstance(event, ApplyOutput):
            self._tails[event.target].append(f"{event.stream}: {event.line}")
        elif isinstance(event, SampleTaken):
            self._samples.append(
                (
                    self.rollout_id,
                    event.wave,
                    event.check,
                    event.target,
                    event.phase,
                    event.ts,
                    event.value,
                    event.baseline,
                    event.outcome,
                    event.reason,
                )
            )
        if isinstance(event, DURABLE) or len(self._events) >= BATCH_SIZE:
            self.flush(event)
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
            else:
                self._timer = loop.call_later(FLUSH_SECONDS, self.flush)

    def flush(self, event: Event | None = None) -> None:
        """Write the buffered rows, and what ``event`` changes, in one transaction."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        db = self.history.db
        with db.atomic():
            if self._events:
                db.conn.executemany(
                    "INSERT OR IGNORE INTO events (rollout_id, seq, ts, kind, data) VALUES (?, ?, ?, ?, ?)",
                    self._events,
                )
                self._events.clear()
            if self._samples:
                db.conn.executemany(
                    "INSERT INTO samples (rollout_id, wave, check_name, target, phase, ts, value, baseline, outcome, reason) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    self._samples,
                )
                self._samples.clear()
            if event is not None:
                self._apply(event)

    def _apply(self, e: Event) -> None:
        conn = self.history.db.conn
        rid = self.rollout_id
        if isinstance(e, ApplyStarted):
            self._tails.pop(e.target, None)
            cursor = conn.execute(
                "INSERT INTO applies (rollout_id, wave, target, action, version, from_version, command, started) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [rid, e.wave, e.target, e.action, e.version, e.from_version, e.command, e.ts],
            )
            self._apply_ids[e.target] = int(cursor.lastrowid or 0)
        elif isinstance(e, ApplyFinished):
            tail = "\n".join(self._tails.pop(e.target, ()))
            apply_id = self._apply_ids.pop(e.target, None)
            conn.execute(
                "UPDATE applies SET finished = ?, outcome = ?, reason = ?, duration = ?, output_tail = ? "
                "WHERE id = ? AND outcome = 'started'",
                [e.ts, e.outcome, e.reason, e.duration, tail, apply_id],
            )
            if e.outcome == "ok":
                conn.execute(
                    "INSERT INTO ledger (target, module, version, since, rollout_id, action) VALUES (?, ?, ?, ?, ?, ?)",
                    [e.target, self.module, e.version, e.ts, rid, e.action],
                )
        elif isinstance(e, WaveStarted):
            conn.execute(
                "INSERT OR IGNORE INTO waves (rollout_id, number, name, channel, started) VALUES (?, ?, ?, ?, ?)",
                [rid, e.wave, e.name, e.channel, e.ts],
            )
        elif isinstance(e, GateEvaluated):
            conn.execute(
                "UPDATE waves SET verdict = ?, reasons = ? WHERE rollout_id = ? AND number = ?",
                [e.verdict, json.dumps(list(e.reasons)), rid, e.wave],
            )
        elif isinstance(e, WaveFinished):
            conn.execute(
                "UPDATE waves SET outcome = ?, finished = ? WHERE rollout_id = ? AND number = ?",
                [e.outcome, e.ts, rid, e.wave],
            )
        elif isinstance(e, OperatorAction):
            conn.execute(
                "INSERT INTO operator_actions (rollout_id, ts, actor, action, reason, wave, target) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [rid, e.ts, e.actor, e.action, e.reason, e.wave, e.target],
            )
        elif isinstance(e, RolloutFinished):
            conn.execute(
                "UPDATE rollouts SET finished = ?, outcome = ?, exit_code = ?, summary = ? WHERE id = ?",
                [e.ts, e.outcome, e.exit_code, e.summary, rid],
            )
