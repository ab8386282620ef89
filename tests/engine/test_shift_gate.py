"""``compare = "mann-whitney"`` in real rollouts of simulated metrics: a shift fails, noise passes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rollout_helpers import MODULE, Events, build_estate, channel, make_rollout, members

from sluice.engine.model.estate import EstateError, parse_estate
from sluice.engine.rollout.events import GateEvaluated, SampleTaken


def _estate(
    tmp_path: Path, *, compare: str, factor: float, baseline: str = "self", increase: str = "10%"
) -> Any:
    check = {
        "source": "simulated",
        "metric": "p99_latency",
        "base": 0.12,
        "max": 0.25,
        "max_increase": increase,
        "interval": "1s",
        "compare": compare,
        "baseline": baseline,
    }
    if not increase:
        del check["max_increase"]
    return build_estate(
        tmp_path,
        channels=[channel("dev", soak="30s", checks=["latency"]), channel("prod")],
        targets={**members("dev", 2), **members("prod", 3)},
        checks={"latency": check},
        simulation={
            "seed": 3,
            "regressions": [
                {
                    "module": MODULE,
                    "version": "2.0",
                    "metric": "p99_latency",
                    "factor": factor,
                    "channels": ["dev"],
                }
            ],
        },  # fmt: skip
    )


async def _gate(estate: Any) -> tuple[str, GateEvaluated, Events]:
    rollout = make_rollout(estate)
    events = Events(rollout)
    outcome = await rollout.run()
    gate = events.of(GateEvaluated, wave=1)[0]
    return outcome.outcome, gate, events


async def test_a_shift_within_the_absolute_limits_fails_the_wave(tmp_path: Path) -> None:
    # +40 % latency: never above max 0.25, and an absolute threshold lets it through...
    outcome, gate, events = await _gate(
        _estate(tmp_path, compare="threshold", factor=1.4, increase="")
    )
    soak = [s.value for s in events.of(SampleTaken, phase="soak")]
    assert max(soak) < 0.25
    assert gate.verdict == "passed" and outcome == "done"
    # ...but the U test sees the wave's level shifted by more than max_increase (10 %).
    outcome, gate, _ = await _gate(_estate(tmp_path, compare="mann-whitney", factor=1.4))
    assert gate.verdict == "failed" and outcome == "halted"
    assert any("shifted higher by more than 10%" in r for r in gate.reasons), gate.reasons
    test = gate.checks["latency"]["targets"]["dev-1"]["test"]
    assert test["p"] < 0.05 and test["median"] > test["baseline_median"] * 1.1
    assert test["n_baseline"] == 8  # the pre-wave samples


async def test_pure_noise_passes(tmp_path: Path) -> None:
    outcome, gate, _ = await _gate(_estate(tmp_path, compare="mann-whitney", factor=1.0))
    assert gate.verdict == "passed" and outcome == "done"
    for series in gate.checks["latency"]["targets"].values():
        assert series["test"]["decidable"] and series["test"]["p"] >= 0.05
    assert all(
        o == "pass" for s in gate.checks["latency"]["targets"].values() for o in s["outcomes"]
    )


async def test_a_shift_smaller_than_max_increase_passes(tmp_path: Path) -> None:
    # +5 %, surely detectable with 30 samples, but below the 10 % effect size that counts.
    outcome, gate, _ = await _gate(_estate(tmp_path, compare="mann-whitney", factor=1.05))
    assert gate.verdict == "passed", gate.reasons


async def test_control_baseline_compares_with_the_control_groups_samples(tmp_path: Path) -> None:
    outcome, gate, events = await _gate(
        _estate(tmp_path, compare="mann-whitney", factor=1.4, baseline="control")
    )
    assert gate.verdict == "failed"
    controls = events.of(SampleTaken, phase="control", wave=1)
    test = gate.checks["latency"]["targets"]["dev-1"]["test"]
    assert test["n_baseline"] == len(controls) >= 6  # 3 control targets × rounds


async def test_too_few_samples_is_inconclusive(tmp_path: Path) -> None:
    estate = build_estate(
        tmp_path,
        channels=[channel("dev", soak="2s", checks=["latency"])],
        targets=members("dev", 1),
        checks={
            "latency": {
                "source": "simulated",
                "metric": "p99_latency",
                "interval": "1s",
                "compare": "mann-whitney",
                "baseline": "control",
            }
        },  # fmt: skip
    )
    # No later wave: no control group, so the pool is the one self baseline (2 vs 1 sample).
    outcome, gate, _ = await _gate(estate)
    assert gate.verdict == "inconclusive" and outcome == "halted"
    assert any("too few samples" in r for r in gate.reasons), gate.reasons


def test_alpha_must_be_a_probability(tmp_path: Path) -> None:
    text = """
[estate]
name = "x"
[[channels]]
name = "dev"
checks = ["lat"]
[executors.sim]
kind = "simulated"
[modules.op]
versions = ["1", "2"]
initial = "1"
[checks.lat]
source = "simulated"
metric = "p99_latency"
compare = "mann-whitney"
alpha = 0
[checks.lat2]
source = "simulated"
metric = "p99_latency"
compare = "wilcoxon"
alpha = 0.9
[targets.a]
channel = "dev"
executor = "sim"
"""
    try:
        parse_estate(text, tmp_path / "e.toml")
    except EstateError as exc:
        problems = [str(p) for p in exc.problems]
    else:
        raise AssertionError("accepted")
    assert any(":16: checks.lat.alpha: alpha must be above 0" in p for p in problems), problems
    assert any(":20: checks.lat2.compare: expected one of" in p for p in problems), problems
    assert any(":21: checks.lat2.alpha: 0.9 is above the maximum 0.5" in p for p in problems), (
        problems
    )
