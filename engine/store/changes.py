"""The rows each durable event of the stream changes besides its own event row (the recorder
runs them in the event's write transaction). Pure: SQL with ``?`` parameters, for both backends.
No statement reads a result back — an apply's finish finds its row by target — so a PostgreSQL
transaction of them is pipelined in one round trip."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from sluice.engine.rollout.events import (
    ApplyFinished,
    ApplyStarted,
    Event,
    GateEvaluated,
    OperatorAction,
    RolloutFinished,
    WaveFinished,
    WaveStarted,
)

Change = tuple[str, list[Any]]
#: A finished apply's ledger entry: rows of their own, read in ``id`` order only.
LEDGER_SQL = (
    "INSERT INTO ledger (target, module, version, since, rollout_id, action) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)


def _apply_started(rid: int, module: str, tail: Iterable[str], e: Any) -> list[Change]:
    return [
        (
            "INSERT INTO applies (rollout_id, wave, target, action, version, from_version, "
            "command, started) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                rid,
                e.wave,
                e.target,
                e.action,
                e.version,
                e.from_version,
                e.command,
                e.ts,
            ],
        )
    ]


def _apply_finished(rid: int, module: str, tail: Iterable[str], e: Any) -> list[Change]:
    # The apply's row is its newest still "started" one: the one its start inserted (or, adopted,
    # the stopped sluice's) — two applies of one target never overlap. No id is read back.
    changes = [
        (
            "UPDATE applies SET finished = ?, outcome = ?, reason = ?, duration = ?, "
            "output_tail = ? WHERE id = (SELECT max(id) FROM applies WHERE rollout_id = ? "
            "AND target = ? AND outcome = 'started')",
            [e.ts, e.outcome, e.reason, e.duration, "\n".join(tail), rid, e.target],
        )
    ]
    if e.outcome == "ok":
        changes.append((LEDGER_SQL, [e.target, module, e.version, e.ts, rid, e.action]))
    return changes


def _wave_started(rid: int, module: str, tail: Iterable[str], e: Any) -> list[Change]:
    # A resumed rollout starts its unfinished wave again: the row is reopened (the first start
    # is kept), so a wave left "stopped" does not read as stopped while it runs.
    return [
        (
            "INSERT INTO waves (rollout_id, number, name, channel, started) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (rollout_id, number) DO UPDATE SET finished = NULL, outcome = NULL, "
            "verdict = NULL, reasons = NULL",
            [rid, e.wave, e.name, e.channel, e.ts],
        )
    ]


def _gate_evaluated(rid: int, module: str, tail: Iterable[str], e: Any) -> list[Change]:
    return [
        (
            "UPDATE waves SET verdict = ?, reasons = ? WHERE rollout_id = ? AND number = ?",
            [e.verdict, json.dumps(list(e.reasons)), rid, e.wave],
        )
    ]


def _wave_finished(rid: int, module: str, tail: Iterable[str], e: Any) -> list[Change]:
    return [
        (
            "UPDATE waves SET outcome = ?, finished = ? WHERE rollout_id = ? AND number = ?",
            [e.outcome, e.ts, rid, e.wave],
        )
    ]


def _operator_action(rid: int, module: str, tail: Iterable[str], e: Any) -> list[Change]:
    return [
        (
            "INSERT INTO operator_actions (rollout_id, ts, actor, action, reason, wave, target) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [rid, e.ts, e.actor, e.action, e.reason, e.wave, e.target],
        )
    ]


def _rollout_finished(rid: int, module: str, tail: Iterable[str], e: Any) -> list[Change]:
    return [
        (
            "UPDATE rollouts SET finished = ?, outcome = ?, exit_code = ?, summary = ? WHERE id = ?",
            [e.ts, e.outcome, e.exit_code, e.summary, rid],
        ),
        # A rollout that halts or stops at a gate ends without finishing that wave: close it
        # with the rollout's outcome, or `show` would call it "in progress" forever.
        (
            "UPDATE waves SET outcome = ?, finished = ? WHERE rollout_id = ? AND outcome IS NULL",
            [e.outcome, e.ts, rid],
        ),
    ]


#: What each durable event changes (an adopted apply: nothing yet — its finish updates the
#: stopped sluice's row, still "started").
_CHANGES: dict[type[Event], Callable[[int, str, Iterable[str], Any], list[Change]]] = {
    ApplyStarted: _apply_started,
    ApplyFinished: _apply_finished,
    WaveStarted: _wave_started,
    GateEvaluated: _gate_evaluated,
    WaveFinished: _wave_finished,
    OperatorAction: _operator_action,
    RolloutFinished: _rollout_finished,
}


def changes(event: Event, rollout_id: int, module: str, tail: Iterable[str]) -> list[Change]:
    """The statements ``event`` runs (``tail``: its target's last output lines, for a finish)."""
    make = _CHANGES.get(type(event))
    return [] if make is None else make(rollout_id, module, tail, event)
