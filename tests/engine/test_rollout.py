"""The rollout engine: waves in order, bounded concurrency, the failure budget, the event stream."""

from __future__ import annotations

import pytest
from rollout_helpers import (
    SIM,
    Events,
    HeldExecutor,
    build_estate,
    channel,
    counting_factory,
    make_rollout,
    members,
    of_kind,
    start,
)

from sluice.engine.rollout.events import (
    ApplyFinished,
    ApplyStarted,
    RolloutFinished,
    RolloutStarted,
    StateChanged,
    WaveApplied,
    WaveFinished,
    WaveStarted,
)
from sluice.engine.rollout.state import FAILED, OK, PENDING
from sluice.engine.support.clock import Clock


@pytest.mark.timeout(30)
async def test_waves_run_in_plan_order_and_every_target_is_applied(tmp_path):
    estate = build_estate(
        tmp_path,
        channels=[channel("dev", waves=[1, "100%"]), channel("prod")],
        targets={**members("dev", 3), **members("prod", 2)},
    )
    rollout = make_rollout(estate)
    events = Events(rollout)
    outcome = await rollout.run()

    assert (outcome.outcome, outcome.exit_code) == ("done", 0)
    assert [e.wave for e in events.of(WaveStarted)] == [1, 2, 3]
    order = [
        (type(e).__name__, e.wave) for e in events.all if isinstance(e, WaveStarted | WaveFinished)
    ]
    assert order == [
        ("WaveStarted", 1),
        ("WaveFinished", 1),
        ("WaveStarted", 2),
        ("WaveFinished", 2),
        ("WaveStarted", 3),
        ("WaveFinished", 3),
    ]
    # No apply of a wave starts before the previous wave finished.
    finished_at = {e.wave: e.seq for e in events.of(WaveFinished)}
    for e in events.of(ApplyStarted):
        if e.wave > 1:
            assert e.seq > finished_at[e.wave - 1]
    assert {t.status for t in rollout.targets.values()} == {OK}
    assert {t.version for t in rollout.targets.values()} == {"2.0"}
    assert isinstance(events.all[0], RolloutStarted)
    assert isinstance(events.all[-1], RolloutFinished)
    assert "5 applied" in outcome.summary


@pytest.mark.timeout(30)
@pytest.mark.parametrize("max_parallel", [1, 3, 8])
async def test_concurrency_never_exceeds_max_parallel(tmp_path, max_parallel):
    estate = build_estate(
        tmp_path,
        channels=[channel("dev", max_parallel=max_parallel)],
        targets=members("dev", 24),
        # real (scaled) simulated applies of different lengths, so slots free up out of order
        executors={"sim": {"kind": "simulated", "duration": "0.1s..1s"}},
    )
    factory, made = counting_factory()
    rollout = make_rollout(estate, clock=Clock(0.01), executor_factory=factory)
    outcome = await rollout.run()

    assert outcome.outcome == "done"
    (executor,) = made
    assert len(executor.at_start) == 24
    assert executor.peak == max_parallel
    # A semaphore, not batches: once the first slots are filled, every new apply starts the
    # moment one finishes, with the other max_parallel - 1 still running.
    assert executor.at_start[:max_parallel] == list(range(max_parallel))
    assert set(executor.at_start[max_parallel:]) <= {max_parallel - 1}


@pytest.mark.timeout(30)
async def test_each_wave_has_its_own_concurrency_bound(tmp_path):
    """Each wave has its own bound; a wave does not start before the previous one ends."""
    estate = build_estate(
        tmp_path,
        channels=[channel("a", max_parallel=2), channel("b", max_parallel=5)],
        targets={**members("a", 6), **members("b", 10)},
        executors={"sim": {"kind": "simulated", "duration": "0.1s..0.5s"}},
    )
    factory, made = counting_factory()
    rollout = make_rollout(estate, clock=Clock(0.01), executor_factory=factory)
    events = Events(rollout)
    peaks: dict[int, int] = {}

    def watch(event):
        if isinstance(event, ApplyStarted):
            peaks[event.wave] = max(peaks.get(event.wave, 0), made[0].in_flight + 1)

    rollout.bus.listen(watch)
    assert (await rollout.run()).outcome == "done"
    assert peaks == {1: 2, 2: 5}
    assert len(events.of(ApplyFinished)) == 16


@pytest.mark.timeout(30)
async def test_failure_budget_exactly_at_the_limit_continues(tmp_path):
    estate = build_estate(
        tmp_path,
        channels=[channel("dev", max_failures=1, max_parallel=1), channel("prod")],
        targets={**members("dev", 4), **members("prod", 2)},
        executors={"sim": {**SIM, "fail_targets": ["dev-1"]}},
    )
    rollout = make_rollout(estate)
    events = Events(rollout)
    outcome = await rollout.run()

    assert outcome.outcome == "done"
    applied = events.of(WaveApplied, wave=1)[0]
    assert (applied.ok, applied.failed, applied.tolerated) == (3, 1, 1)
    assert not applied.budget_exceeded
    assert applied.summary == "1 failed (budget 1)"
    assert rollout.targets["dev-1"].status == FAILED
    assert "timeout waiting for StatefulSet" in rollout.targets["dev-1"].reason
    assert [e.wave for e in events.of(WaveStarted)] == [1, 2]


@pytest.mark.timeout(30)
async def test_failure_budget_one_past_the_limit_halts_and_starts_nothing_new(tmp_path):
    estate = build_estate(
        tmp_path,
        channels=[channel("dev", max_failures=1, max_parallel=1), channel("prod")],
        targets={**members("dev", 5), **members("prod", 2)},
        executors={"sim": {**SIM, "fail_targets": ["dev-1", "dev-2"]}},
    )
    rollout = make_rollout(estate)
    events = Events(rollout)
    outcome = await rollout.run()

    assert (outcome.outcome, outcome.exit_code) == ("halted", 1)
    assert "2 failed (budget 1)" in outcome.summary
    # Once the budget was spent, no new apply started in that wave, and no later wave ran.
    assert [e.target for e in events.of(ApplyStarted)] == ["dev-1", "dev-2"]
    applied = events.of(WaveApplied, wave=1)[0]
    assert (applied.ok, applied.failed, applied.tolerated, applied.skipped) == (0, 2, 1, 3)
    assert applied.budget_exceeded
    assert applied.summary.startswith("2 failed (budget 1)")
    halt = [e for e in events.of(StateChanged) if e.state == "halted"]
    assert halt and "2 failed (budget 1)" in halt[-1].detail
    assert [t.status for n, t in rollout.targets.items() if n.startswith("dev")] == [
        FAILED,
        FAILED,
        PENDING,
        PENDING,
        PENDING,
    ]
    assert events.of(WaveStarted, wave=2) == []


@pytest.mark.timeout(30)
async def test_failure_budget_in_flight_applies_finish_after_it_is_spent(tmp_path):
    """Budget spent while others run: those finish (not cancelled), nothing new starts."""
    estate = build_estate(
        tmp_path,
        channels=[channel("dev", max_failures=0, max_parallel=3)],
        targets=members("dev", 6),
    )
    held = HeldExecutor(fail={"dev-1"})
    rollout = make_rollout(estate, executor_factory=lambda *a: held)
    events = Events(rollout)
    task = start(rollout)
    await events.first(of_kind(ApplyStarted, target="dev-3"))
    held.release()
    outcome = await task

    assert outcome.outcome == "halted"
    assert held.started == ["dev-1", "dev-2", "dev-3"]
    assert [rollout.targets[f"dev-{i}"].status for i in (1, 2, 3)] == [FAILED, OK, OK]
    assert "1 failed (budget 0)" in outcome.summary


@pytest.mark.timeout(30)
async def test_percentage_budget_of_the_wave(tmp_path):
    estate = build_estate(
        tmp_path,
        channels=[channel("dev", max_failures="25%", max_parallel=8)],
        targets=members("dev", 8),
        executors={"sim": {**SIM, "fail_targets": ["dev-3", "dev-7"]}},
    )
    rollout = make_rollout(estate)
    events = Events(rollout)
    assert (await rollout.run()).outcome == "done"
    assert events.of(WaveApplied)[0].summary == "2 failed (budget 2)"


@pytest.mark.timeout(30)
async def test_noop_targets_are_not_applied_and_an_all_noop_wave_is_skipped(tmp_path):
    from sluice.engine.model.plan import make_plan
    from sluice.engine.rollout.options import RolloutOptions
    from sluice.engine.rollout.orchestrator import Rollout

    estate = build_estate(
        tmp_path,
        channels=[channel("dev"), channel("prod")],
        targets={**members("dev", 2), **members("prod", 2)},
    )
    plan = make_plan(estate, "op", "2.0", {"dev-1": "2.0", "dev-2": "2.0", "prod-1": "2.0"})
    rollout = Rollout(
        estate, plan, clock=Clock(0), options=RolloutOptions(interactive=False), actor="t"
    )
    events = Events(rollout)
    assert (await rollout.run()).outcome == "done"
    assert [e.target for e in events.of(ApplyStarted)] == ["prod-2"]
    assert events.of(WaveFinished, wave=1)[0].outcome == "skipped"


@pytest.mark.timeout(30)
async def test_until_wave_stops_resumably(tmp_path):
    estate = build_estate(
        tmp_path,
        channels=[channel("dev"), channel("stg"), channel("prod")],
        targets={**members("dev", 1), **members("stg", 1), **members("prod", 1)},
    )
    rollout = make_rollout(estate, until_wave=2)
    events = Events(rollout)
    outcome = await rollout.run()
    assert (outcome.outcome, outcome.exit_code) == ("stopped", 4)
    assert "sluice resume" in outcome.summary
    assert [e.wave for e in events.of(WaveStarted)] == [1, 2]
    assert rollout.targets["prod-1"].status == PENDING


@pytest.mark.timeout(30)
async def test_event_stream_of_a_run_has_strictly_increasing_seq(tmp_path):
    plain = build_estate(
        tmp_path,
        channels=[channel("dev", waves=[1, "100%"]), channel("prod")],
        targets={**members("dev", 4), **members("prod", 3)},
        executors={"sim": {"kind": "simulated", "duration": "0.1s..0.3s"}},
    )
    estate_checks = build_estate(
        tmp_path,
        channels=[
            channel("dev", waves=[1, "100%"], soak="2s", checks=["lat"]),
            channel("prod", checks=["lat"]),
        ],
        targets={**members("dev", 4), **members("prod", 3)},
        executors={"sim": {"kind": "simulated", "duration": "0.1s..0.3s"}},
        checks={
            "lat": {"source": "simulated", "metric": "p99_latency", "max": 1.0, "interval": "1s"}
        },
    )
    for est in (plain, estate_checks):
        rollout = make_rollout(est, clock=Clock(0.01))
        events = Events(rollout)
        assert (await rollout.run()).outcome == "done"
        seqs = [e.seq for e in events.all]
        assert len(seqs) > 20
        assert all(b > a for a, b in zip(seqs, seqs[1:], strict=False))
        stamps = [e.ts for e in events.all]
        assert stamps == sorted(stamps)
