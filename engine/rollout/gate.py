"""Judging measurements: one outcome per measurement, one verdict per gate.

Like Argo Rollouts' analysis, a check fails the gate when its fails exceed ``failure_limit``, is
inconclusive when inconclusives exceed ``inconclusive_limit`` and errors when consecutive errors
exceed ``consecutive_error_limit`` (all strict "greater than"). Unlike Argo, the gate **fails
closed**: it passes only if the *latest* measurement of every check on every target passed, so a
soak ending on an error or on missing data is inconclusive even under the limits. Errors past
their limit make the gate inconclusive (the operator decides) rather than failed, so a monitoring
outage never triggers an automatic rollback.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from sluice.engine.checks.base import Reading
from sluice.engine.model.estate import CheckSpec
from sluice.engine.rollout.shift import ShiftTest, judge_shift

PASS, FAIL, INCONCLUSIVE, ERROR = "pass", "fail", "inconclusive", "error"
PASSED, FAILED, VERDICT_INCONCLUSIVE = "passed", "failed", "inconclusive"


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def classify(spec: CheckSpec, reading: Reading, baseline: float | None) -> tuple[str, str]:
    """One measurement's outcome and the reason, e.g. ``("fail", "0.36 > max 0.25")``."""
    if reading.error is not None:
        return ERROR, reading.error
    if reading.breach is not None:  # the source judged it against a bound only it sees
        return FAIL, reading.breach
    value = reading.value
    if value is None or math.isnan(value) or math.isinf(value):
        return INCONCLUSIVE, reading.detail or "no data"
    if spec.max is not None and value > spec.max:
        return FAIL, f"{_fmt(value)} > max {_fmt(spec.max)}"
    if spec.min is not None and value < spec.min:
        return FAIL, f"{_fmt(value)} < min {_fmt(spec.min)}"
    # mann-whitney: the relative limit is the effect size of the U test (Gate.record), not a
    # per-measurement bound.
    if spec.max_increase is not None and spec.compare != "mann-whitney":
        if baseline is None or math.isnan(baseline):
            return INCONCLUSIVE, "no baseline to compare with"
        # A relative increase over a zero baseline is undefined; the absolute bounds still hold.
        if baseline > 0:
            limit = baseline * (1 + spec.max_increase)
            if value > limit:
                rise = value / baseline - 1
                return FAIL, (
                    f"{_fmt(value)} is +{rise:.0%} over baseline {_fmt(baseline)} "
                    f"(max +{spec.max_increase:.0%})"
                )
    return PASS, ""


@dataclass
class Series:
    """The measurements of one check on one target during one soak."""

    check: str
    target: str
    baseline: float | None = None
    values: list[float | None] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)
    fails: int = 0
    inconclusives: int = 0
    errors: int = 0
    consecutive_errors: int = 0
    #: the longest run of consecutive errors: once past the limit, a later pass does not undo it
    peak_consecutive_errors: int = 0
    last_reason: str = ""
    #: the reasons of the latest fail, inconclusive and error, which the limit reasons quote
    last_fail: str = ""
    last_inconclusive: str = ""
    last_error: str = ""
    #: mann-whitney: the baseline's samples (pre-wave for ``self``) and the latest test
    baseline_values: list[float] = field(default_factory=list)
    test: ShiftTest | None = None

    def add(self, value: float | None, outcome: str, reason: str) -> None:
        self.values.append(value)
        self.outcomes.append(outcome)
        self.last_reason = reason
        if outcome == ERROR:
            self.errors += 1
            self.consecutive_errors += 1
            self.last_error = reason
            self.peak_consecutive_errors = max(
                self.peak_consecutive_errors, self.consecutive_errors
            )
        else:
            self.consecutive_errors = 0
        if outcome == FAIL:
            self.fails += 1
            self.last_fail = reason
        elif outcome == INCONCLUSIVE:
            self.inconclusives += 1
            self.last_inconclusive = reason

    @property
    def latest(self) -> str | None:
        return self.outcomes[-1] if self.outcomes else None


class Gate:
    """Collects a wave's measurements and gives the verdict with the reasons behind it."""

    def __init__(self, checks: list[CheckSpec], targets: list[str]):
        self.checks = {c.name: c for c in checks}
        self.series = {(c.name, t): Series(c.name, t) for c in checks for t in targets}
        #: mann-whitney with ``baseline = "control"``: the control group's samples, per check
        self.control_values: dict[str, list[float]] = {c.name: [] for c in checks}

    def set_baseline(self, check: str, target: str, value: float | None) -> None:
        series = self.series[(check, target)]
        series.baseline = value
        if value is not None and math.isfinite(value):
            series.baseline_values.append(value)

    def add_control(self, check: str, values: list[float]) -> None:
        """The control group's values of one round (the mann-whitney comparison pool)."""
        self.control_values[check].extend(v for v in values if math.isfinite(v))

    def _pool(self, spec: CheckSpec, series: Series) -> list[float]:
        if spec.baseline == "control" and self.control_values[spec.name]:
            return self.control_values[spec.name]
        return series.baseline_values

    def record(
        self, check: str, target: str, reading: Reading, baseline: float | None = None
    ) -> tuple[str, str]:
        """Judge and record one measurement; ``baseline`` overrides the stored one (control group)."""
        series = self.series[(check, target)]
        spec = self.checks[check]
        base = series.baseline if baseline is None else baseline
        outcome, reason = classify(spec, reading, base)
        if spec.compare == "mann-whitney" and outcome == PASS and reading.value is not None:
            values = [v for v in series.values if v is not None] + [reading.value]
            series.test = judge_shift(spec, values, self._pool(spec, series))
            outcome, reason = series.test.outcome, series.test.reason
        series.add(reading.value if reading.error is None else None, outcome, reason)
        return outcome, reason

    def _limit_reasons(self) -> tuple[list[str], list[str]]:
        failed, inconclusive = [], []
        for s in self.series.values():
            spec = self.checks[s.check]
            if s.fails > spec.failure_limit:
                failed.append(
                    f"{s.check} on {s.target}: {s.fails} failed measurement(s) > limit {spec.failure_limit} ({s.last_fail})"
                )
            if s.inconclusives > spec.inconclusive_limit:
                inconclusive.append(
                    f"{s.check} on {s.target}: {s.inconclusives} inconclusive > limit {spec.inconclusive_limit} ({s.last_inconclusive})"
                )
            if s.peak_consecutive_errors > spec.consecutive_error_limit:
                inconclusive.append(
                    f"{s.check} on {s.target}: {s.peak_consecutive_errors} consecutive errors > limit {spec.consecutive_error_limit} ({s.last_error})"
                )
        return failed, inconclusive

    def early_verdict(self) -> tuple[str, list[str]] | None:
        """A verdict reached before the soak ends (a limit exceeded), or None."""
        failed, inconclusive = self._limit_reasons()
        if failed:
            return FAILED, failed
        if inconclusive:
            return VERDICT_INCONCLUSIVE, inconclusive
        return None

    def final_verdict(self) -> tuple[str, list[str]]:
        """The verdict at the end of the soak (fail closed)."""
        early = self.early_verdict()
        if early is not None:
            return early
        reasons = []
        for s in self.series.values():
            if s.latest is None:
                reasons.append(f"{s.check} on {s.target}: no measurement")
            elif s.latest != PASS:
                reasons.append(
                    f"{s.check} on {s.target}: latest measurement {s.latest} ({s.last_reason})"
                )
            elif s.test is not None and not s.test.decidable:
                # Fail closed: too few samples to ever show a shift is not a pass.
                reasons.append(f"{s.check} on {s.target}: {s.test.reason}")
        if reasons:
            return VERDICT_INCONCLUSIVE, reasons
        return PASSED, []

    def summary(self) -> dict[str, Any]:
        """Per check, per target: the measurements that made the verdict (for events/history)."""
        out: dict[str, Any] = {}
        for s in self.series.values():
            spec = self.checks[s.check]
            out.setdefault(
                s.check,
                {
                    "max": spec.max,
                    "min": spec.min,
                    "max_increase": spec.max_increase,
                    "failure_limit": spec.failure_limit,
                    "targets": {},
                },
            )
            out[s.check]["targets"][s.target] = {
                "baseline": s.baseline,
                "values": list(s.values),
                "outcomes": list(s.outcomes),
                "fails": s.fails,
                "inconclusives": s.inconclusives,
                "errors": s.errors,
                "latest": s.latest,
                "reason": s.last_reason,
            }
            if spec.compare == "mann-whitney":
                out[s.check]["compare"], out[s.check]["alpha"] = spec.compare, spec.alpha
                out[s.check]["targets"][s.target]["test"] = s.test.to_dict() if s.test else None
        return out
