"""Judging costs: our Mann-Whitney U test against scipy's, and a gate judged with it.

Run: ``.venv/bin/python bench/bench_judging.py [--rounds N]`` (needs the dev extra for scipy).

Measured, in one run, on the same samples:
- ``stats.mann_whitney`` vs ``scipy.stats.mannwhitneyu`` (the floor), per call, for the sizes a
  soak makes: 3 vs 8 (exact), 30 vs 8 and 60 vs 41 (normal approximation), printed as a ratio;
- a gate of 200 targets × 1 check judging 30 rounds with ``compare = "mann-whitney"`` vs
  ``"threshold"`` (the floor): the extra cost per measurement of the test.

The gate re-tests a target's whole series at each measurement, so its cost grows with the soak's
length: the figure says whether that matters next to the check's interval (it does not: a 30-round
soak costs well under a millisecond per measurement).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sluice.engine.checks.base import Reading  # noqa: E402
from sluice.engine.model.estate import CheckSpec  # noqa: E402
from sluice.engine.rollout.gate import Gate  # noqa: E402
from sluice.engine.rollout.stats import mann_whitney  # noqa: E402


def _per_call(fn: Callable[[], object], rounds: int) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        fn()
    return (time.perf_counter() - start) / rounds


def _spec(compare: str) -> CheckSpec:
    return CheckSpec(
        name="p99", source="simulated", max=0.25, min=None, max_increase=0.2, interval=10.0,
        failure_limit=0, inconclusive_limit=0, consecutive_error_limit=4, baseline="self",
        timeout=10.0, settings=MappingProxyType({}), compare=compare,
    )  # fmt: skip


def _gate_seconds(compare: str, targets: int, rounds: int) -> float:
    rng = random.Random(1)
    gate = Gate([_spec(compare)], [f"t{i}" for i in range(targets)])
    for i in range(targets):
        for _ in range(8):
            gate.set_baseline("p99", f"t{i}", 0.12 + rng.gauss(0, 0.005))
    readings = [
        [Reading(0.12 + rng.gauss(0, 0.005)) for _ in range(targets)] for _ in range(rounds)
    ]
    start = time.perf_counter()
    for row in readings:
        for i, reading in enumerate(row):
            gate.record("p99", f"t{i}", reading)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    from scipy.stats import mannwhitneyu

    rng = random.Random(7)
    print("Mann-Whitney U, one-sided, per call (ours vs scipy on the same samples)")
    for n1, n2 in ((3, 8), (30, 8), (60, 41)):
        x = [0.13 + rng.gauss(0, 0.01) for _ in range(n1)]
        y = [0.12 + rng.gauss(0, 0.01) for _ in range(n2)]
        ours = _per_call(lambda x=x, y=y: mann_whitney(x, y), args.rounds)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            floor = _per_call(
                lambda x=x, y=y: mannwhitneyu(x, y, alternative="greater"), args.rounds
            )
        same = abs(mann_whitney(x, y).p - mannwhitneyu(x, y, alternative="greater").pvalue)
        print(
            f"  {n1:>2} vs {n2:>2}: ours {ours * 1e6:7.1f} µs, scipy {floor * 1e6:7.1f} µs, "
            f"ratio {ours / floor:5.2f}  (|Δp| {same:.1e})"
        )
    targets, rounds = 200, 30
    threshold = _gate_seconds("threshold", targets, rounds)
    shifted = _gate_seconds("mann-whitney", targets, rounds)
    per = (shifted - threshold) / (targets * rounds)
    print(
        f"gate, {targets} targets × {rounds} rounds: threshold {threshold * 1e3:.1f} ms, "
        f"mann-whitney {shifted * 1e3:.1f} ms, ratio {shifted / threshold:.1f}, "
        f"+{per * 1e6:.0f} µs per measurement"
    )


if __name__ == "__main__":
    main()
