"""Rollouts that continue from what history recorded: where a resume picks up, and the plan of
a rollback of recorded targets (what :class:`~sluice.engine.app.session.Session` records and runs)."""

from __future__ import annotations

from typing import Any

from sluice.engine.model.estate import Estate
from sluice.engine.model.plan import Plan, PlanError, PlannedTarget, Wave
from sluice.engine.rollout.options import ResumeState
from sluice.engine.rollout.state import FAILED, OK, ROLLED_BACK, UNKNOWN
from sluice.engine.store.history import History, RolloutRecord
from sluice.engine.store.reads import DONE_OUTCOMES


class ResumeError(Exception):
    """Nothing to resume, or the rollout cannot be resumed (exit code 2)."""


def plan_from_record(estate: Estate, data: dict[str, Any]) -> Plan:
    """Rebuild the recorded plan against the estate (targets and channels must still exist)."""
    try:
        return Plan.from_dict(estate, data)
    except PlanError as exc:
        raise ResumeError(str(exc)) from None


def resume_point(history: History, record_id: int, plan: Plan) -> ResumeState:
    """What rollout ``record_id`` (of ``plan``) recorded before it stopped."""
    prior: dict[str, tuple[str, str]] = {}
    stopped: set[str] = set()
    for row in history.applies(record_id):
        if row["outcome"] == "started":
            prior[row["target"]] = (UNKNOWN, row["from_version"])
        elif row["outcome"] == "ok":
            prior[row["target"]] = (
                ROLLED_BACK if row["action"] == "rollback" else OK,
                row["version"],
            )
        elif row["outcome"] == "failed":
            prior[row["target"]] = (FAILED, row["from_version"])
        else:
            # Cut off mid-apply (the console quit, the task was cancelled): what it did is
            # unknown, exactly like an apply a crash interrupted — but sluice stopped it, so the
            # status its wrapper wrote (a signal) is not an outcome to adopt: it is re-applied.
            prior[row["target"]] = (UNKNOWN, row["from_version"])
        if row["outcome"] == "aborted":
            stopped.add(row["target"])
        else:
            stopped.discard(row["target"])
    recorded_waves = history.waves(record_id)
    done = {w["number"] for w in recorded_waves if w["outcome"] in DONE_OUTCOMES}
    # A wave that started before the restart had its entry approval then.
    entered = {w["number"] for w in recorded_waves if w["started"] is not None}
    start_wave = next((w.number for w in plan.waves if w.number not in done), len(plan.waves) + 1)
    baselines = {
        (row["wave"], row["check_name"], row["target"]): row["value"]
        for row in history.samples(record_id)
        if row["phase"] == "baseline" and row["wave"] >= start_wave
    }
    return ResumeState(
        start_wave=start_wave,
        prior=prior,
        baselines=baselines,
        entered=frozenset(entered),
        stopped=frozenset(stopped),
    )


def rollback_plan(
    estate: Estate, history: History, source: RolloutRecord, targets: list[str]
) -> tuple[Plan, list[PlannedTarget]]:
    """One wave taking ``targets`` back to the versions the ledger had before ``source`` (and
    the targets that really change)."""
    module = source.module
    initial = estate.modules[module].initial if module in estate.modules else source.from_versions
    before = history.ledger(module, before_rollout=source.id)
    now = history.ledger(module)
    planned = []
    for name in targets:
        spec = estate.targets.get(name)
        if spec is None:
            raise ResumeError(f"target {name!r} is no longer in the estate")
        # from = what it should return to; to = what it runs now (the rollback undoes to → from).
        planned.append(
            PlannedTarget(
                name,
                spec.channel,
                spec.executor,
                before.get(name, initial),
                now.get(name, initial),
            )
        )
    todo = [t for t in planned if not t.noop]
    channel = estate.channel(planned[0].channel) if planned else estate.channels[0]
    wave = Wave(1, channel, 0, tuple(planned), 0, 0.0, 0.0, waves_in_channel=1)
    plan = Plan(
        module, ",".join(sorted({t.from_version for t in todo})) or "-", (wave,), len(planned)
    )
    return plan, todo
