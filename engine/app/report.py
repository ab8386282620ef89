"""``sluice history``, ``show`` and ``export``: a recorded rollout as a table, JSON or TOML."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from typing import Any

from sluice.engine.app.outcomes import outcome_text, superseded_by
from sluice.engine.model.units import format_duration
from sluice.engine.store.history import History, RolloutRecord

EXPORT_FORMAT = 1


def _when(ts: float | None) -> str:
    if ts is None:
        return "—"
    return dt.datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _duration(record: RolloutRecord) -> str:
    return "—" if record.duration is None else format_duration(record.duration)


def history_json(history: History) -> str:
    records = history.rollouts()
    return json.dumps(
        [{**r.to_dict(), "superseded_by": superseded_by(r, records)} for r in records], indent=2
    )


def make_table(
    title: str, columns: tuple[str, ...], rows: Sequence[tuple[str, ...]], numeric: set[str]
) -> Any:
    """A Rich table whose columns never squeeze below their content (terminals scroll; pipes don't)."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for i, column in enumerate(columns):
        width = max([len(column), *(len(row[i]) for row in rows)])
        table.add_column(
            column, justify="right" if column in numeric else "left", min_width=width, no_wrap=True
        )
    for row in rows:
        table.add_row(*row)
    return table


def print_wide(renderable: Any) -> None:
    from rich.console import Console

    Console(width=max(Console().width, 140)).print(renderable)


#: The columns of a history listing: `sluice history` and the console's history screen.
HISTORY_COLUMNS = (
    "id",
    "kind",
    "module",
    "from → to",
    "who",
    "started",
    "duration",
    "outcome",
    "waves",
)


def history_row(r: RolloutRecord, records: Iterable[RolloutRecord] = ()) -> tuple[str, ...]:
    """One rollout as a row of :data:`HISTORY_COLUMNS` (``records``: the others, for what
    superseded it)."""
    return (
        str(r.id),
        r.kind,
        r.module,
        f"{r.from_versions} → {r.version}",
        r.actor,
        _when(r.started),
        _duration(r),
        outcome_text(r, records),
        f"{r.waves_done}/{r.waves_total}",
    )


def history_table(history: History) -> Any:
    records = history.rollouts()
    rows = [history_row(r, records) for r in records]
    return make_table(f"history: {history.path}", HISTORY_COLUMNS, rows, {"id", "waves"})


def record(history: History, record: RolloutRecord) -> dict[str, Any]:
    """Everything recorded about one rollout (except the raw event stream)."""
    applies = history.applies(record.id)
    samples = history.samples(record.id)
    waves = []
    for wave in history.waves(record.id):
        number = wave["number"]
        waves.append(
            {
                **wave,
                "applies": [a for a in applies if a["wave"] == number],
                "samples": [s for s in samples if s["wave"] == number],
            }
        )
    return {
        "format": EXPORT_FORMAT,
        "rollout": record.to_dict(),
        "plan": record.plan,
        "waves": waves,
        "operator_actions": history.operator_actions(record.id),
    }


def show_text(history: History, rec: RolloutRecord) -> list[str]:
    data = record(history, rec)
    outcome = outcome_text(rec, history.rollouts()) if rec.outcome != "running" else rec.outcome
    lines = [
        f"rollout #{rec.id} ({rec.kind}) · {rec.module} {rec.from_versions} → {rec.version} · by {rec.actor}@{rec.host}",
        f"started {_when(rec.started)} · finished {_when(rec.finished)} · {_duration(rec)} · {outcome}"
        + (f" (exit {rec.exit_code})" if rec.exit_code is not None else ""),
    ]
    if rec.summary:
        lines.append(f"  {rec.summary}")
    for wave in data["waves"]:
        verdict = f" · gate {wave['verdict']}" if wave["verdict"] else ""
        lines.append(
            f"── wave {wave['number']} · {wave['name']} · {wave['outcome'] or 'in progress'}{verdict}"
        )
        for reason in wave["reasons"][:10]:
            lines.append(f"     {reason}")
        for a in wave["applies"]:
            mark = {"ok": "✓", "failed": "✗", "started": "?"}.get(a["outcome"], "·")
            what = f"{a['action']} {a['from_version']} → {a['version']}"
            took = f" ({format_duration(a['duration'])})" if a["duration"] is not None else ""
            detail = (
                f": {a['reason']}"
                if a["reason"]
                else (" (unknown outcome)" if a["outcome"] == "started" else "")
            )
            lines.append(f"   {mark} {a['target']} {what}{took}{detail}")
        soak = [s for s in wave["samples"] if s["phase"] == "soak"]
        by_series: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for s in soak:
            by_series.setdefault((s["check_name"], s["target"]), []).append(s)
        for (check, target), series in by_series.items():
            if all(s["outcome"] == "pass" for s in series):
                continue
            values = " ".join(
                "—" if s["value"] is None else f"{s['value']:.4g}" for s in series[-8:]
            )
            lines.append(
                f"     {check} on {target}: [{values}] latest {series[-1]['outcome']}: {series[-1]['reason'] or ''}"
            )
        passed = sum(1 for s in soak if s["outcome"] == "pass")
        if soak:
            lines.append(f"     measurements: {len(soak)} ({passed} passed)")
    for action in data["operator_actions"]:
        where = action["target"] or (f"wave {action['wave']}" if action["wave"] else "")
        why = f": {action['reason']}" if action["reason"] else ""
        lines.append(
            f"● {_when(action['ts'])} {action['actor']} {action['action']} {where}{why}".rstrip()
        )
    return lines


def export_toml(history: History, rec: RolloutRecord) -> str:
    """The rollout record as TOML (documented in docs/history.md). ``None`` values are omitted."""
    import tomli_w

    return tomli_w.dumps(_drop_none(record(history, rec)))


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value if v is not None]
    return value
