"""``sluice rollback ESTATE --to ROLLOUT_ID|TIME``: the estate back to what it ran at a point in time.

The version ledger says what each target ran of each module at any moment. Every (target,
module) whose version changed since the point — the moment that rollout finished, or the given
time — goes back to the version it had then. A target that changed two modules since gets both
restored, its newest change first: the changes are taken in *rounds* (round 1 is every target's
newest change, round 2 its second newest…), and each round is one rollout per module, newest
module first. Each of those is an ordinary recorded rollout — waves per channel, the failure
budget, soaks and gates, manual approvals — only its channels run production first (``order =
"reverse"``, the default: the estate that hurts most is put back first) unless
``--order forward``. Their plans say ``restore`` so a rerun of the same command, after a crash,
first resumes the part that was cut off and then plans the rest again from the ledger, which by
then holds what is done.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sluice.engine.model.estate import Channel, Estate
from sluice.engine.model.plan import Plan, PlannedTarget, Wave, _wave_seconds, wave_sizes
from sluice.engine.model.units import format_duration
from sluice.engine.store.history import History, RolloutRecord

ORDERS = ("reverse", "forward")


class RestoreError(Exception):
    """The point in time or the options cannot be used (exit code 2)."""


@dataclass(frozen=True)
class PointInTime:
    ts: float
    label: str  # "#3" or the time as given, for plans and messages


@dataclass(frozen=True)
class Change:
    """One (target, module) to put back: ``now`` → ``then``; ``since`` its newest change."""

    target: str
    module: str
    now: str
    then: str
    since: float
    rollout_id: int
    channel: str


@dataclass(frozen=True)
class RestorePart:
    round: int
    module: str
    changes: tuple[Change, ...]


def point_in_time(history: History, text: str) -> PointInTime:
    """``ROLLOUT_ID`` (the moment it finished) or an ISO 8601 time (local time if no offset)."""
    if re.fullmatch(r"#?\d+", text.strip()):
        number = int(text.strip().lstrip("#"))
        record = history.rollout(number)
        if record is None:
            raise RestoreError(f"--to {text}: there is no rollout #{number} in {history.path}")
        if record.finished is None:
            raise RestoreError(
                f"--to {text}: rollout #{number} has not finished ({record.outcome}); "
                "give a time, or finish it first"
            )
        return PointInTime(record.finished, f"#{number}")
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise RestoreError(
            f"--to {text!r}: expected a rollout id or a time like 2026-12-01T09:30:00Z"
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()  # a time without an offset is the operator's local time
    return PointInTime(when.timestamp(), text.strip())


def changes_since(
    history: History, estate: Estate, point: PointInTime, channel: str | None = None
) -> tuple[list[Change], list[str]]:
    """Every (target, module) whose ledger version now differs from the one at ``point``.

    Returns the changes and notes on what cannot be restored (a target or module gone from the
    estate, a version no longer published).
    """
    notes: list[str] = []
    changes: list[Change] = []
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in history.ledger_entries():
        by_key.setdefault((row["target"], row["module"]), []).append(row)
    for (target, module), rows in sorted(by_key.items()):
        later = [r for r in rows if r["since"] > point.ts]
        if not later:
            continue
        spec = estate.modules.get(module)
        if spec is None:
            notes.append(f"{target}: module {module} is no longer in the estate: left as it is")
            continue
        before = [r for r in rows if r["since"] <= point.ts]
        then = before[-1]["version"] if before else spec.initial
        now = rows[-1]["version"]
        if now == then:
            continue
        target_spec = estate.targets.get(target)
        if target_spec is None or not target_spec.runs(module):
            notes.append(f"{target}: no longer in the estate (for {module}): left as it is")
            continue
        if channel is not None and target_spec.channel != channel:
            continue
        if then not in spec.versions:
            notes.append(
                f"{target}: {module} {then} is no longer a published version: left at {now}"
            )
            continue
        newest = rows[-1]
        changes.append(
            Change(
                target,
                module,
                now,
                then,
                newest["since"],
                newest["rollout_id"],
                target_spec.channel,
            )
        )
    return changes, notes


def restore_parts(changes: Sequence[Change]) -> list[RestorePart]:
    """Rounds (each target's newest change first), then one part per module, newest first."""
    per_target: dict[str, list[Change]] = {}
    for change in changes:
        per_target.setdefault(change.target, []).append(change)
    rounds: dict[int, list[Change]] = {}
    for target_changes in per_target.values():
        for index, change in enumerate(sorted(target_changes, key=lambda c: -c.since)):
            rounds.setdefault(index + 1, []).append(change)
    parts = []
    for number in sorted(rounds):
        modules: dict[str, list[Change]] = {}
        for change in rounds[number]:
            modules.setdefault(change.module, []).append(change)
        for module, group in sorted(modules.items(), key=lambda kv: -max(c.since for c in kv[1])):
            parts.append(RestorePart(number, module, tuple(group)))
    return parts


def restore_plan(
    estate: Estate, part: RestorePart, point: PointInTime, order: str = "reverse"
) -> Plan:
    """The waves that put ``part`` back: per channel (production first unless ``forward``)."""
    if order not in ORDERS:
        raise RestoreError(f"--order {order}: expected one of {', '.join(ORDERS)}")
    by_target = {c.target: c for c in part.changes}
    channels: list[Channel] = list(estate.channels)
    if order == "reverse":
        channels.reverse()
    waves: list[Wave] = []
    covered, total = 0, len(part.changes)
    for channel in channels:
        members = [estate.targets[n] for n in channel.targets if n in by_target]
        start = 0
        sizes = wave_sizes(channel.waves, len(members))
        for index, size in enumerate(sizes):
            batch = tuple(
                PlannedTarget(
                    t.name, channel.name, t.executor, by_target[t.name].now, by_target[t.name].then
                )
                for t in members[start : start + size]
            )
            start += size
            covered += len(batch)
            waves.append(
                Wave(
                    number=len(waves) + 1,
                    channel=channel,
                    index_in_channel=index,
                    targets=batch,
                    failure_budget=channel.max_failures.of(len(batch)),
                    blast_radius=covered / total if total else 0.0,
                    expected_seconds=_wave_seconds(estate, channel, batch),
                    waves_in_channel=len(sizes),
                )
            )
    return Plan(part.module, f"as of {point.label}", tuple(waves), total)


def restore_marker(point: PointInTime, part: RestorePart, parts: int, order: str) -> dict[str, Any]:
    """Recorded in the plan: which restore this rollout is part of (a rerun resumes it)."""
    return {
        "to": point.ts,
        "label": point.label,
        "round": part.round,
        "parts": parts,
        "order": order,
    }


def unfinished_restore(history: History, point: PointInTime) -> RolloutRecord | None:
    """A part of this same restore left running or stopped (killed, or stopped at a gate)."""
    for record in history.unfinished():
        marker = record.plan.get("restore")
        if record.kind == "rollout" and marker and abs(marker.get("to", -1) - point.ts) < 1e-6:
            return record
    return None


PREVIEW_COLUMNS = (
    "part", "module", "wave", "target", "channel", "now", "then", "changed by", "since",
)  # fmt: skip


def preview_rows(
    parts: Sequence[RestorePart], plans: Sequence[Plan], now: float
) -> list[tuple[str, ...]]:
    """One row per (target, module), in the order they will be restored."""
    rows = []
    for index, (part, plan) in enumerate(zip(parts, plans, strict=True), 1):
        by_target = {c.target: c for c in part.changes}
        for wave in plan.waves:
            for planned in wave.targets:
                change = by_target[planned.name]
                row: tuple[str, ...] = (
                    str(index),
                    part.module,
                    str(wave.number),
                    change.target,
                    change.channel,
                    change.now,
                    change.then,
                    f"#{change.rollout_id}",
                    f"{format_duration(max(0.0, now - change.since))} ago",
                )
                rows.append(row)
    return rows
