"""What the target detail and the estate matrix show, read from history (no textual here).

Both screens work the same in the live console, in history and in a replay: they read the ledger,
the applies and the samples of the estate's history, never the engine's live objects. A live
rollout's newest output lines, which history keeps only as a tail, come from the console model.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from sluice.engine.app.apply_output import SpooledOutput, spooled_output
from sluice.engine.app.outcomes import outcome_text
from sluice.engine.model.estate import Estate
from sluice.engine.model.template import Context, TemplateError, render
from sluice.engine.store.history import History, RolloutRecord


@dataclass(frozen=True)
class LedgerRow:
    """One change of one module on one target: what the timeline lists."""

    module: str
    version: str
    since: float
    rollout_id: int
    actor: str
    action: str  # apply | rollback | …
    outcome: str  # of the rollout that made the change, in words ("superseded by #2")


@dataclass(frozen=True)
class LastApply:
    rollout_id: int
    module: str
    action: str
    version: str
    from_version: str
    outcome: str
    reason: str
    started: float
    duration: float | None
    command: str
    lines: tuple[str, ...]  # the head and tail history recorded
    #: all of it, from the apply's spool file (None: its executor does not spool, or pruned)
    spooled: SpooledOutput | None = None


@dataclass
class CheckSeries:
    """One check on one target in one rollout: the chart's data."""

    check: str
    wave: int
    values: list[float | None] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)
    #: the value each measurement was compared with (own baseline, or the control median)
    baselines: list[float | None] = field(default_factory=list)
    baseline_kind: str = "self"  # self | control
    maximum: float | None = None
    minimum: float | None = None
    max_increase: float | None = None

    def limit_at(self, index: int) -> float | None:
        """The ceiling measurement ``index`` was held to (absolute max, or relative to baseline)."""
        limits = [] if self.maximum is None else [self.maximum]
        base = self.baselines[index] if index < len(self.baselines) else None
        if self.max_increase is not None and base is not None:
            limits.append(base * (1 + self.max_increase))
        return min(limits) if limits else None

    def control_median(self) -> float | None:
        if self.baseline_kind != "control":
            return None
        known = [b for b in self.baselines if b is not None]
        return statistics.median(known) if known else None


@dataclass
class TargetDetail:
    name: str
    channel: str
    executor: str
    modules: dict[str, str]  # module → the version it runs now (ledger, else initial)
    ledger: list[LedgerRow]
    last_apply: LastApply | None
    rollout: RolloutRecord | None  # whose measurements are drawn
    series: list[CheckSeries]
    vars: dict[str, str]
    dashboard: str | None


def modules_of(estate: Estate, target: str) -> list[str]:
    spec = estate.targets[target]
    return [m for m in estate.modules if spec.runs(m)]


def current_versions(estate: Estate, history: History) -> dict[str, dict[str, str]]:
    """module → target → version now (the ledger, or the module's ``initial``)."""
    table: dict[str, dict[str, str]] = {}
    for module, spec in estate.modules.items():
        ledger = history.ledger(module)
        table[module] = {
            name: ledger.get(name, spec.initial)
            for name, t in estate.targets.items()
            if t.runs(module)
        }
    return table


def ledger_rows(history: History, target: str) -> list[LedgerRow]:
    """Every module's ledger entries for ``target``, newest first."""
    records = history.rollouts(plans=False)  # (one row per rollout, for the outcome words)
    by_id = {r.id: r for r in records}
    rows = []
    for entry in history.target_ledger(target):
        record = by_id.get(entry["rollout_id"])
        rows.append(
            LedgerRow(
                module=entry["module"],
                version=entry["version"],
                since=entry["since"],
                rollout_id=entry["rollout_id"],
                actor=record.actor if record else "?",
                action=entry["action"],
                outcome=_outcome(record, records),
            )
        )
    rows.sort(key=lambda r: (r.since, r.rollout_id), reverse=True)
    return rows


def _outcome(record: RolloutRecord | None, records: list[RolloutRecord]) -> str:
    if record is None:
        return "?"
    if record.outcome == "running":  # halted or waiting for the operator counts as unfinished
        return "in progress"
    return outcome_text(record, records)


def last_apply(history: History, target: str, estate: Estate | None = None) -> LastApply | None:
    """The newest recorded apply (or rollback) of ``target``, with its output as recorded (and,
    given the ``estate``, in full from its spool once it finished)."""
    a = history.target_last_apply(target)
    if a is None:
        return None
    record = history.rollout(a["rollout_id"], plan=False)
    return LastApply(
        rollout_id=a["rollout_id"],
        module=record.module if record else "?",
        action=a["action"],
        version=a["version"],
        from_version=a["from_version"],
        outcome=a["outcome"],
        reason=a["reason"] or "",
        started=a["started"],
        duration=a["duration"],
        command=a["command"] or "",
        lines=tuple((a["output_tail"] or "").splitlines()),
        spooled=(
            spooled_output(estate, a["rollout_id"], target)
            if estate is not None and a["duration"] is not None
            else None
        ),
    )


def check_series(
    estate: Estate, history: History, rollout_id: int, target: str
) -> list[CheckSeries]:
    """``target``'s soak measurements in rollout ``rollout_id``, one series per check and wave."""
    series: dict[tuple[int, str], CheckSeries] = {}
    for row in history.target_samples(rollout_id, target):
        if row["phase"] != "soak":
            continue
        key = (row["wave"], row["check_name"])
        if key not in series:
            spec = estate.checks.get(row["check_name"])
            series[key] = CheckSeries(
                check=row["check_name"],
                wave=row["wave"],
                baseline_kind=spec.baseline if spec else "self",
                maximum=spec.max if spec else None,
                minimum=spec.min if spec else None,
                max_increase=spec.max_increase if spec else None,
            )
        s = series[key]
        s.values.append(row["value"])
        s.outcomes.append(row["outcome"])
        s.baselines.append(row["baseline"])
    return [series[k] for k in sorted(series)]


def dashboard_link(estate: Estate, target: str, module: str, version: str) -> str | None:
    """The target's dashboard URL with its template filled (None if it has none or it fails)."""
    spec = estate.targets[target]
    if not spec.dashboard:
        return None
    ctx = Context(
        target=target,
        channel=spec.channel,
        module=module,
        version=version,
        previous_version="",
        vars=spec.vars,
    )
    try:
        return render(spec.dashboard, ctx).display
    except TemplateError:
        return None


def target_detail(
    estate: Estate, history: History, target: str, rollout_id: int | None = None
) -> TargetDetail:
    """Everything the detail screen shows; ``rollout_id``: whose measurements (default: newest
    rollout that measured this target)."""
    spec = estate.targets[target]
    modules = modules_of(estate, target)
    current = {m: estate.modules[m].initial for m in modules}
    for entry in history.target_ledger(target):  # oldest first: the last entry of a module wins
        if entry["module"] in current:
            current[entry["module"]] = entry["version"]
    # (The records without their plans: nothing here needs one, and they are most of the read.)
    record = history.rollout(rollout_id, plan=False) if rollout_id is not None else None
    series = check_series(estate, history, record.id, target) if record else []
    if record is None:
        for candidate in history.rollouts(plans=False):
            series = check_series(estate, history, candidate.id, target)
            if series:
                record = candidate
                break
    module = record.module if record else (modules[0] if modules else "")
    return TargetDetail(
        name=target,
        channel=spec.channel,
        executor=spec.executor,
        modules=current,
        ledger=ledger_rows(history, target),
        last_apply=last_apply(history, target, estate),
        rollout=record,
        series=series,
        vars={k: str(v) for k, v in spec.vars.items()},
        dashboard=dashboard_link(estate, target, module, current.get(module, "")),
    )


def placeholder(estate: Estate, target: str) -> TargetDetail:
    """What the detail shows of ``target`` before its history is read: the estate file's part."""
    spec = estate.targets[target]
    return TargetDetail(
        name=target,
        channel=spec.channel,
        executor=spec.executor,
        modules={},
        ledger=[],
        last_apply=None,
        rollout=None,
        series=[],
        vars={k: str(v) for k, v in spec.vars.items()},
        dashboard=None,
    )


def as_dict(detail: TargetDetail) -> dict[str, Any]:
    """For tests and debugging: the detail as plain data."""
    return {
        "name": detail.name,
        "modules": detail.modules,
        "ledger": [r.__dict__ for r in detail.ledger],
        "series": [s.check for s in detail.series],
    }
