"""Printers of the event stream: one readable line per significant event (:class:`TextPrinter`),
or NDJSON (:class:`JsonPrinter`).

The headless runner prints with them; the console's event log words its lines with
:class:`TextPrinter` too, which is why they live here and not beside the runner.
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any

from sluice.engine.model.units import format_duration
from sluice.engine.rollout.events import (
    ApplyAdopted,
    ApplyFinished,
    Event,
    GateEvaluated,
    Notice,
    OperatorAction,
    PlansReviewed,
    RolloutFinished,
    RolloutStarted,
    SoakStarted,
    StateChanged,
    WatchEnded,
    WatchStarted,
    WaveApplied,
    WaveStarted,
)


class TextPrinter:
    """One readable line per significant event."""

    def __init__(self, out: IO[str] | None = None):
        # sys.stdout now, not when this module was imported (it may have been replaced since)
        self.out = out or sys.stdout

    def __call__(self, event: Event) -> None:
        line = self.format(event)
        if line is not None:
            print(line, file=self.out, flush=True)

    def format(self, e: Event) -> str | None:
        if isinstance(e, RolloutStarted):
            waves = e.plan.get("waves", [])
            targets = sum(len(w["targets"]) for w in waves)
            verb = "resuming" if e.resumed else "rollout"
            return f"▶ {verb} #{e.rollout_id}: {e.module} → {e.version} on {e.estate}: {len(waves)} waves, {targets} targets (by {e.actor})"
        if isinstance(e, WaveStarted):
            return f"── wave {e.wave} · {e.name}: {len(e.targets)} target(s)"
        if isinstance(e, ApplyFinished):
            verb = {"apply": "", "retry": "retry ", "rollback": "rollback "}.get(e.action, "")
            if e.outcome == "ok":
                return f"   ✓ {verb}{e.target} → {e.version} ({format_duration(e.duration)})"
            return f"   ✗ {verb}{e.target} {e.outcome}: {e.reason}"
        if isinstance(e, ApplyAdopted):
            how = "re-attached, still running" if e.how == "running" else "it finished meanwhile"
            return f"   ↺ {e.target}: adopted the apply a stopped sluice left ({how})"
        if isinstance(e, WaveApplied):
            return f"   applies done: {e.ok} ok, {e.summary}" + (
                f", {e.skipped} not started" if e.skipped else ""
            )
        if isinstance(e, SoakStarted):
            checks = ", ".join(e.checks) or "no checks"
            return f"   soak {format_duration(e.configured)}: {checks}"
        if isinstance(e, GateEvaluated):
            return self._gate(e)
        if isinstance(e, WatchStarted):
            return f"   rear guard: watching wave {e.wave} for {format_duration(e.configured)} while later waves run"
        if isinstance(e, WatchEnded) and e.outcome != "regressed":  # a regression: the halt says it
            return f"   rear guard: wave {e.wave} {e.outcome}" + (
                f": {e.detail}" if e.detail else ""
            )
        if isinstance(e, OperatorAction):
            where = f" {e.target}" if e.target else (f" wave {e.wave}" if e.wave else "")
            why = f": {e.reason}" if e.reason else ""
            return f"   ● {e.action}{where} by {e.actor}{why}"
        if isinstance(e, StateChanged) and e.state in (
            "paused",
            "rolling_back",
            "awaiting_approval",
            "awaiting_entry",
            "held",
        ):
            # Halts are said once, by RolloutFinished.
            word = {"awaiting_entry": "needs approval"}.get(e.state, e.state.replace("_", " "))
            return f"   ■ {word}" + (f": {e.detail}" if e.detail else "")
        if isinstance(e, Notice):
            return f"   ! {e.message}"
        if isinstance(e, PlansReviewed):
            return self._plans(e)
        if isinstance(e, RolloutFinished):
            return f"■ {e.outcome} (exit {e.exit_code}): {e.summary}"
        return None

    def _plans(self, e: PlansReviewed) -> str:
        from sluice.engine.executors.tofu_plan import group_lines

        lines = [f"   plans of wave {e.wave} for review: {len(e.plans)} plan file(s)"]
        for number, group in enumerate(e.groups, 1):
            lines += [f"     {line}" for line in group_lines(number, group)]
        lines += [f"     ✗ {target}: {reason}" for target, reason in sorted(e.errors.items())]
        return "\n".join(lines)

    def _gate(self, e: GateEvaluated) -> str:
        head = f"   gate {e.verdict.upper() if e.verdict != 'passed' else 'passed'}" + (
            " (soak ended early)" if e.early else ""
        )
        lines = [head]
        lines += [f"     {reason}" for reason in e.reasons[:10]]
        if len(e.reasons) > 10:
            lines.append(f"     … and {len(e.reasons) - 10} more")
        if e.verdict == "passed":  # a failed or inconclusive test is in the reasons already
            lines += _shift_lines(e.checks)
        if e.verdict in ("failed", "inconclusive"):
            for check, data in e.checks.items():
                for target, series in data["targets"].items():
                    if series["latest"] == "pass":
                        continue
                    values = " ".join(
                        "—" if v is None else f"{v:.4g}" for v in series["values"][-8:]
                    )
                    limits = ", ".join(
                        f"{k} {v:g}"
                        for k, v in (("max", data["max"]), ("min", data["min"]))
                        if v is not None
                    )
                    if data.get("max_increase") is not None:
                        limits += f"{', ' if limits else ''}max +{data['max_increase']:.0%}"
                    base = series["baseline"]
                    base_text = "—" if base is None else f"{base:.4g}"
                    lines.append(
                        f"     {check} on {target}: [{values}] baseline {base_text}, {limits}"
                    )
        return "\n".join(lines)


def _shift_lines(checks: dict[str, Any], limit: int = 10) -> list[str]:
    """``compare = "mann-whitney"`` checks: each target's U, p and medians, whatever the verdict."""
    lines = []
    for check, data in checks.items():
        if data.get("compare") != "mann-whitney":
            continue
        for target, series in data["targets"].items():
            test = series.get("test")
            if test and test["decidable"]:
                lines.append(
                    f"     {check} on {target}: U={test['u']:g} p={test['p']:.3g} "
                    f"median {test['median']:.4g} vs baseline {test['baseline_median']:.4g} "
                    f"(alpha {test['alpha']:g})"
                )
            elif test:
                lines.append(f"     {check} on {target}: too few samples for the U test")
    return lines[:limit] + ([f"     … and {len(lines) - limit} more"] if len(lines) > limit else [])


#: ``json.dumps(value, default=str)``, with its encoder built once rather than for every line.
_encode = json.JSONEncoder(default=str).encode


class JsonPrinter:
    """NDJSON: one event per line, exactly the stream history records."""

    def __init__(self, out: IO[str] | None = None):
        # sys.stdout now, not when this module was imported (it may have been replaced since)
        self.out = out or sys.stdout

    def __call__(self, event: Event) -> None:
        self.out.write(_encode(event.to_dict()) + "\n")
        self.out.flush()  # a line per event as it happens: a pipeline follows the rollout live
