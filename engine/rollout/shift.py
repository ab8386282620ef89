"""``compare = "mann-whitney"``: has the wave's level shifted from the baseline's?

The wave's samples of one check on one target are compared with the baseline's samples (the
target's own pre-wave samples for ``baseline = "self"``, the control group's samples for
``"control"``) by the one-sided U test of :mod:`sluice.engine.rollout.stats`. ``max_increase`` is
the smallest effect that counts: the baseline's samples are scaled by ``1 + max_increase`` before
the test, so the null hypothesis is "the wave is at most that much worse" and a smaller shift,
however certain, passes. The direction is "higher is worse" unless the check only has a ``min``.

Fail closed: while the samples are too few for any data to reach ``alpha`` (see
:func:`~sluice.engine.rollout.stats.smallest_p`), a measurement is not failed, but the test is
*undecidable* and the gate's final verdict is inconclusive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sluice.engine.model.estate import CheckSpec
from sluice.engine.rollout.stats import UTest, mann_whitney, smallest_p


@dataclass(frozen=True)
class ShiftTest:
    """One measurement's test: its outcome (``pass``/``fail``), reason, and the U test behind it."""

    outcome: str
    reason: str
    decidable: bool
    result: UTest | None
    alpha: float

    def to_dict(self) -> dict[str, Any]:
        r = self.result
        return {
            "outcome": self.outcome,
            "decidable": self.decidable,
            "u": r.u if r else None,
            "p": r.p if r else None,
            "median": r.median1 if r else None,
            "baseline_median": r.median2 if r else None,
            "n": r.n1 if r else 0,
            "n_baseline": r.n2 if r else 0,
            "alpha": self.alpha,
        }


def direction(spec: CheckSpec) -> str:
    """``greater`` (a rise is the regression) unless the check only bounds from below."""
    return "less" if spec.min is not None and spec.max is None else "greater"


def judge_shift(spec: CheckSpec, values: list[float], pool: list[float]) -> ShiftTest:
    """Test the wave's ``values`` against the baseline ``pool`` at ``spec.alpha``."""
    alpha = spec.alpha
    if smallest_p(len(values), len(pool)) >= alpha:
        return ShiftTest(
            "pass",
            f"too few samples for the U test ({len(values)} vs {len(pool)} baseline): "
            f"no data this small can reach p < {alpha:g}",
            decidable=False,
            result=None,
            alpha=alpha,
        )
    alternative = direction(spec)
    effect = spec.max_increase or 0.0
    scaled = [v * (1 + effect) for v in pool] if alternative == "greater" else list(pool)
    result = mann_whitney(values, scaled, alternative=alternative)
    # The medians shown are the unscaled baseline's: what the operator compares by eye.
    result = UTest(
        result.u, result.p, result.n1, result.n2, result.method, result.median1, _median(pool)
    )
    shifted = result.p < alpha
    what = "higher" if alternative == "greater" else "lower"
    margin = f" by more than {effect:.0%}" if effect and alternative == "greater" else ""
    if shifted:
        reason = f"shifted {what}{margin} (p < alpha {alpha:g}): {result.text()}"
    else:
        reason = f"no significant shift{margin}: {result.text()}"
    return ShiftTest("fail" if shifted else "pass", reason, True, result, alpha)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
