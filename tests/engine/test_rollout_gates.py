"""Gates as the rollout runs them: baselines, soak rounds, each verdict, control groups, fail closed."""

from __future__ import annotations

import gc
import math

import pytest
from rollout_helpers import (
    Events,
    build_estate,
    channel,
    make_rollout,
    members,
    scripted,
)

from sluice.engine.checks.base import Reading
from sluice.engine.rollout.events import (
    GateEvaluated,
    SampleTaken,
    SoakStarted,
    WaveFinished,
    WaveStarted,
)
from sluice.engine.rollout.state import OK, ROLLED_BACK

#: 5 s soak, 1 s interval: five measurements per target (timers are zero on Clock(0))
ROUNDS = 5


def gated_estate(tmp_path, *, check=None, dev=2, prod=2, **channel_settings):
    settings = {"soak": "5s", "checks": ["lat"], **channel_settings}
    return build_estate(
        tmp_path,
        channels=[channel("dev", **settings), channel("prod")],
        targets={**members("dev", dev), **members("prod", prod)},
        checks={
            "lat": {
                "source": "simulated",
                "metric": "p99_latency",
                "interval": "1s",
                "max": 0.25,
                **(check or {}),
            }
        },
    )


async def run_gate(estate, script, **kwargs):
    rollout = make_rollout(estate, check_factory=scripted(script), **kwargs)
    events = Events(rollout)
    outcome = await rollout.run()
    gates = events.of(GateEvaluated, wave=1)
    assert len(gates) == 1
    return rollout, events, outcome, gates[0]


@pytest.mark.timeout(30)
async def test_gate_passes_on_healthy_measurements_and_keeps_them(tmp_path):
    rollout, events, outcome, gate = await run_gate(
        gated_estate(tmp_path), lambda ctx, n, base: Reading(0.1 + n / 100)
    )
    assert gate.verdict == "passed" and not gate.early
    assert outcome.outcome == "done"
    series = gate.checks["lat"]["targets"]["dev-1"]
    assert series["values"] == pytest.approx([0.11, 0.12, 0.13, 0.14, 0.15])
    assert series["outcomes"] == ["pass"] * ROUNDS
    assert series["baseline"] == pytest.approx(0.11)
    soak = [e for e in events.of(SampleTaken, wave=1) if e.phase == "soak"]
    assert len(soak) == 2 * ROUNDS
    baselines = [e for e in events.of(SampleTaken, wave=1) if e.phase == "baseline"]
    assert len(baselines) == 2
    # Baselines are taken before the wave's applies, the soak after them.
    first_apply = next(e.seq for e in events.all if e.kind == "apply_started")
    assert all(b.seq < first_apply for b in baselines)
    soak_start = events.of(SoakStarted, wave=1)[0]
    assert all(s.seq > soak_start.seq for s in soak)
    assert events.of(WaveFinished, wave=1)[0].outcome == "passed"


@pytest.mark.timeout(30)
async def test_gate_fails_on_the_absolute_max(tmp_path):
    def script(ctx, n, base):
        return Reading(0.4 if ctx.target == "dev-2" and not base else 0.1)

    rollout, events, outcome, gate = await run_gate(gated_estate(tmp_path), script)
    assert gate.verdict == "failed"
    assert gate.early  # the first fail is past failure_limit 0: no need to soak on
    assert any("dev-2" in r and "0.4 > max 0.25" in r for r in gate.reasons)
    assert not any("dev-1" in r for r in gate.reasons)
    assert (outcome.outcome, outcome.exit_code) == ("halted", 1)
    assert events.of(WaveStarted, wave=2) == []


@pytest.mark.timeout(30)
async def test_gate_fails_on_the_relative_max_increase(tmp_path):
    def script(ctx, n, base):
        return Reading(0.1 if base else 0.13)  # +30%, under the absolute max

    rollout, events, outcome, gate = await run_gate(
        gated_estate(tmp_path, check={"max_increase": "20%"}), script
    )
    assert gate.verdict == "failed"
    assert any("+30% over baseline 0.1 (max +20%)" in r for r in gate.reasons), gate.reasons
    assert outcome.outcome == "halted"


@pytest.mark.timeout(30)
async def test_failure_limit_is_strictly_greater_than(tmp_path):
    # failure_limit 1: one failed measurement is tolerated (and the latest passed) …
    def one_fail(ctx, n, base):
        return Reading(0.4 if n == 2 and not base else 0.1)

    _, _, _, gate = await run_gate(gated_estate(tmp_path, check={"failure_limit": 1}), one_fail)
    assert gate.verdict == "passed"

    # … two are not.
    def two_fails(ctx, n, base):
        return Reading(0.4 if n in (2, 3) and not base else 0.1)

    _, _, _, gate = await run_gate(gated_estate(tmp_path, check={"failure_limit": 1}), two_fails)
    assert gate.verdict == "failed"
    assert any("2 failed measurement(s) > limit 1" in r for r in gate.reasons)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("value", [None, math.nan, math.inf])
async def test_no_data_is_inconclusive_never_passed(tmp_path, value):
    rollout, events, outcome, gate = await run_gate(
        gated_estate(tmp_path), lambda ctx, n, base: Reading(value)
    )
    assert gate.verdict == "inconclusive"
    assert any("inconclusive" in r for r in gate.reasons)
    assert (outcome.outcome, outcome.exit_code) == ("halted", 1)
    samples = [e for e in events.of(SampleTaken) if e.phase == "soak"]
    assert samples and {s.outcome for s in samples} == {"inconclusive"}


@pytest.mark.timeout(30)
async def test_consecutive_errors_past_the_limit_are_inconclusive_never_passed(tmp_path, caplog):
    def script(ctx, n, base):
        return Reading(0.1) if base else Reading(error="connection refused")

    rollout, events, outcome, gate = await run_gate(
        gated_estate(tmp_path, check={"consecutive_error_limit": 2}), script
    )
    assert gate.verdict == "inconclusive"
    assert gate.early
    assert any("3 consecutive errors > limit 2 (connection refused)" in r for r in gate.reasons)
    assert outcome.outcome == "halted"
    # It stopped at the third error of a target: no further rounds were measured.
    values = gate.checks["lat"]["targets"]["dev-1"]["outcomes"]
    assert values == ["error"] * 3
    # Ending the soak early leaves no un-awaited future behind (asyncio would log it).
    gc.collect()
    assert "never retrieved" not in caplog.text


@pytest.mark.timeout(30)
async def test_errors_under_the_limit_that_recover_pass(tmp_path):
    def script(ctx, n, base):
        if not base and n in (1, 2):
            return Reading(error="timeout")
        return Reading(0.1)

    _, _, _, gate = await run_gate(gated_estate(tmp_path), script)
    assert gate.verdict == "passed"


@pytest.mark.timeout(30)
async def test_fail_closed_a_soak_ending_on_an_error_under_the_limit_is_inconclusive(tmp_path):
    def script(ctx, n, base):
        if not base and n == ROUNDS and ctx.target == "dev-1":
            return Reading(error="HTTP 503")
        return Reading(0.1)

    rollout, events, outcome, gate = await run_gate(gated_estate(tmp_path), script)
    assert gate.verdict == "inconclusive"  # Argo would pass this: 1 error ≤ limit 4
    assert not gate.early
    assert gate.reasons == ("lat on dev-1: latest measurement error (HTTP 503)",)
    assert outcome.outcome == "halted"


@pytest.mark.timeout(30)
async def test_fail_closed_a_soak_ending_on_no_data_under_the_limit_is_inconclusive(tmp_path):
    def script(ctx, n, base):
        return Reading(None) if not base and n == ROUNDS else Reading(0.1)

    _, _, _, gate = await run_gate(gated_estate(tmp_path, check={"inconclusive_limit": 3}), script)
    assert gate.verdict == "inconclusive"
    assert all("latest measurement inconclusive" in r for r in gate.reasons)


@pytest.mark.timeout(30)
async def test_source_exception_is_an_error_measurement_not_a_crash(tmp_path):
    def script(ctx, n, base):
        if base:
            return Reading(0.1)
        raise RuntimeError("bug in the source")

    _, _, outcome, gate = await run_gate(gated_estate(tmp_path), script)
    assert gate.verdict == "inconclusive"
    assert outcome.outcome == "halted"
    assert "RuntimeError: bug in the source" in gate.checks["lat"]["targets"]["dev-1"]["reason"]


@pytest.mark.timeout(30)
async def test_no_baseline_makes_a_relative_check_inconclusive(tmp_path):
    def script(ctx, n, base):
        return Reading(error="down") if base else Reading(0.1)

    _, _, _, gate = await run_gate(gated_estate(tmp_path, check={"max_increase": "20%"}), script)
    assert gate.verdict == "inconclusive"
    assert any("no baseline to compare with" in r for r in gate.reasons)


def control_script(upgraded: float):
    """Old-version prod targets read 1, 2 and 3 (median 2); dev reads 1 before, ``upgraded`` after."""

    def script(ctx, n, base):
        if ctx.version == "1.0":
            return Reading(float(ctx.target.rsplit("-", 1)[1]) if ctx.channel == "prod" else 1.0)
        return Reading(upgraded)

    return script


@pytest.mark.timeout(30)
async def test_control_group_is_the_median_of_not_yet_upgraded_later_targets(tmp_path):
    check = {"max_increase": "50%", "max": 100, "baseline": "control"}
    estate = gated_estate(tmp_path, check=check, prod=3)
    # 2.5 is +150% over dev's own baseline (1) but +25% over the control median (2): passes.
    rollout, events, outcome, gate = await run_gate(estate, control_script(2.5), until_wave=1)
    assert gate.verdict == "passed"
    control = [e for e in events.of(SampleTaken, wave=1) if e.phase == "control"]
    assert sorted({e.target for e in control}) == ["prod-1", "prod-2", "prod-3"]
    assert len(control) == 3 * ROUNDS  # measured at every round, alongside the wave
    soak = [e for e in events.of(SampleTaken, wave=1) if e.phase == "soak"]
    assert {e.baseline for e in soak} == {2.0}
    # The control group stayed on the old version.
    assert {rollout.targets[f"prod-{i}"].version for i in (1, 2, 3)} == {"1.0"}

    # 3.5 is +75% over the control median: fails, and the reason names that baseline.
    _, _, outcome, gate = await run_gate(estate, control_script(3.5), until_wave=1)
    assert gate.verdict == "failed"
    assert any("+75% over baseline 2 (max +50%)" in r for r in gate.reasons), gate.reasons

    # The same numbers against each target's own baseline fail.
    self_estate = gated_estate(tmp_path, check={**check, "baseline": "self"}, prod=3)
    _, _, _, gate = await run_gate(self_estate, control_script(2.5), until_wave=1)
    assert gate.verdict == "failed"
    assert any("over baseline 1 " in r for r in gate.reasons)


@pytest.mark.timeout(30)
async def test_manual_gate_headless_without_approve_stops_with_4(tmp_path):
    estate = gated_estate(tmp_path, gate="manual")
    rollout, events, outcome, gate = await run_gate(estate, lambda ctx, n, base: Reading(0.1))
    assert gate.verdict == "passed"
    assert (outcome.outcome, outcome.exit_code) == ("stopped", 4)
    assert "awaits approval" in outcome.summary and "--approve" in outcome.summary


@pytest.mark.timeout(30)
async def test_manual_gate_headless_with_approve_continues(tmp_path):
    estate = gated_estate(tmp_path, gate="manual")
    rollout, events, outcome, gate = await run_gate(
        estate, lambda ctx, n, base: Reading(0.1), approve=True
    )
    assert outcome.outcome == "done"
    assert events.of(WaveFinished, wave=1)[0].outcome == "approved"
    approvals = [e for e in events.all if e.kind == "operator" and e.action == "approve"]
    assert [(a.wave, a.actor, a.reason) for a in approvals] == [(1, "tester", "--approve")]


@pytest.mark.timeout(30)
async def test_approve_never_approves_an_inconclusive_gate(tmp_path):
    estate = gated_estate(tmp_path, gate="manual")
    rollout, events, outcome, gate = await run_gate(
        estate, lambda ctx, n, base: Reading(None), approve=True
    )
    assert gate.verdict == "inconclusive"
    assert (outcome.outcome, outcome.exit_code) == ("halted", 1)
    assert [e for e in events.all if e.kind == "operator"] == []


@pytest.mark.timeout(30)
async def test_on_failure_rollback_rolls_the_wave_back_then_halts(tmp_path):
    estate = gated_estate(tmp_path, on_failure="rollback")

    def script(ctx, n, base):
        return Reading(0.4 if ctx.version == "2.0" else 0.1)

    rollout, events, outcome, gate = await run_gate(estate, script)
    assert gate.verdict == "failed"
    assert outcome.outcome == "halted"
    assert [(t.status, t.version) for n, t in rollout.targets.items() if n.startswith("dev")] == [
        (ROLLED_BACK, "1.0"),
        (ROLLED_BACK, "1.0"),
    ]
    rollbacks = [e for e in events.all if e.kind == "apply_finished" and e.action == "rollback"]
    assert sorted(e.target for e in rollbacks) == ["dev-1", "dev-2"]
    assert all(e.outcome == "ok" and e.version == "1.0" for e in rollbacks)
    assert all(t.status != OK for t in rollout.targets.values())


@pytest.mark.timeout(30)
async def test_a_control_target_that_errors_is_left_out_of_the_median(tmp_path):
    check = {"max_increase": "50%", "max": 100, "baseline": "control"}
    estate = gated_estate(tmp_path, check=check, prod=3)
    healthy = control_script(2.5)

    def script(ctx, n, base):
        if ctx.target == "prod-3" and not base:
            return Reading(error="scrape failed")
        return healthy(ctx, n, base)

    _, events, _, gate = await run_gate(estate, script, until_wave=1)
    # median of prod-1 and prod-2 (1 and 2) is 1.5; 2.5 is +67% over it
    assert gate.verdict == "failed"
    assert any("over baseline 1.5 " in r for r in gate.reasons), gate.reasons
    errors = [e for e in events.of(SampleTaken) if e.phase == "control" and e.target == "prod-3"]
    assert errors and {(e.outcome, e.value, e.reason) for e in errors} == {
        ("error", None, "scrape failed")
    }
