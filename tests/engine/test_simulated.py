"""The simulated executor and check: reproducible, time-scaled, able to fail, hang and regress."""

from __future__ import annotations

import asyncio
import time

import pytest
from rollout_helpers import Events, build_estate, channel, make_rollout, members

from sluice.engine.checks.base import create_check
from sluice.engine.executors.base import Job, create_executor
from sluice.engine.model.template import Context
from sluice.engine.rollout.events import ApplyFinished
from sluice.engine.support.clock import Clock
from sluice.engine.support.resources import Resources


def sim_estate(tmp_path, *, seed=0, checks=None, simulation=None, **executor):
    return build_estate(
        tmp_path,
        channels=[channel("dev", max_parallel=50, max_failures="100%"), channel("prod")],
        targets={**members("dev", 40), **members("prod", 2)},
        executors={"sim": {"kind": "simulated", **executor}},
        checks=checks,
        simulation={"seed": seed, **(simulation or {})},
    )


def job(target="dev-1", action="apply"):
    return Job(target, "dev", "op", "2.0" if action == "apply" else "1.0", "1.0", action)


def executor(estate, clock=None):
    return create_executor(estate.executors["sim"], estate, clock or Clock(0), Resources())


async def outcomes(estate) -> dict[str, tuple[bool, str]]:
    sim = executor(estate)
    results = {}
    for name in estate.targets:
        result = await sim.apply(job(name), lambda stream, line: None)
        results[name] = (result.ok, result.reason)
    return results


@pytest.mark.timeout(30)
async def test_the_same_seed_plays_the_same_way(tmp_path):
    first = await outcomes(sim_estate(tmp_path, seed=7, failure_rate=0.3))
    again = await outcomes(sim_estate(tmp_path, seed=7, failure_rate=0.3))
    other = await outcomes(sim_estate(tmp_path, seed=8, failure_rate=0.3))
    assert first == again
    assert first != other
    failed = [name for name, (ok, _) in first.items() if not ok]
    assert 0 < len(failed) < len(first)  # a rate, not all or nothing


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("rate", "expected"), [(0.0, 0), (1.0, 42)])
async def test_failure_rate_extremes(tmp_path, rate, expected):
    results = await outcomes(sim_estate(tmp_path, failure_rate=rate))
    assert sum(not ok for ok, _ in results.values()) == expected


@pytest.mark.timeout(30)
async def test_named_failures_fail_applies_but_not_rollbacks(tmp_path):
    sim = executor(sim_estate(tmp_path, fail_targets=["dev-3"]))
    lines: list[tuple[str, str]] = []
    result = await sim.apply(job("dev-3"), lambda s, line: lines.append((s, line)))
    assert not result.ok and "StatefulSet" in result.reason
    assert lines[-1][0] == "stderr"
    assert (await sim.apply(job("dev-3", "rollback"), lambda s, line: None)).ok
    assert (await sim.apply(job("dev-4"), lambda s, line: None)).ok


@pytest.mark.timeout(30)
async def test_durations_come_from_the_range_scaled_by_the_clock(tmp_path):
    estate = sim_estate(tmp_path, duration="2s")
    began = time.monotonic()
    assert (await executor(estate, Clock(0.02)).apply(job(), lambda s, line: None)).ok
    took = time.monotonic() - began
    assert took >= 0.035  # 2 s of estate time at 50× is 40 ms (upper bounds are load-bound)
    assert took < 5
    began = time.monotonic()
    assert (await executor(estate, Clock(0)).apply(job(), lambda s, line: None)).ok
    assert time.monotonic() - began < took  # 0: as fast as possible


@pytest.mark.timeout(30)
async def test_a_hanging_target_times_out_after_the_timeout(tmp_path):
    estate = sim_estate(tmp_path, hang_targets=["dev-2"], timeout="5s", duration="0s")
    rollout = make_rollout(estate, clock=Clock(0.01))
    events = Events(rollout)
    outcome = await asyncio.wait_for(rollout.run(), 10)
    (hung,) = events.of(ApplyFinished, target="dev-2")
    assert (hung.outcome, hung.reason) == ("failed", "timed out after 5s")
    assert outcome.outcome == "done"  # the dev channel tolerates 100% failures


@pytest.mark.timeout(30)
async def test_a_hanging_target_is_stopped_by_abort(tmp_path):
    estate = sim_estate(tmp_path, hang_targets=["dev-1"], duration="0s")
    rollout = make_rollout(estate, clock=Clock(1), interactive=True)
    events = Events(rollout)
    task = asyncio.get_running_loop().create_task(rollout.run())
    await events.first(lambda e: e.kind == "apply_output" and e.target == "dev-1")
    await events.first(lambda e: e.kind == "apply_finished" and e.target == "dev-40")
    assert rollout.abort(reason="stuck").ok
    outcome = await asyncio.wait_for(task, 10)
    assert outcome.outcome == "aborted"
    assert events.of(ApplyFinished, target="dev-1")[0].outcome == "aborted"


def check_estate(tmp_path, seed=3):
    return sim_estate(
        tmp_path,
        seed=seed,
        checks={"lat": {"source": "simulated", "metric": "p99_latency", "base": 0.1}},
        simulation={
            "regressions": [
                {
                    "module": "op",
                    "version": "2.0",
                    "metric": "p99_latency",
                    "channels": ["dev"],
                    "factor": 3.0,
                }
            ]
        },
    )


async def readings(estate, ctx, n=20):
    source = create_check(estate.checks["lat"], estate, Clock(0), Resources())
    return [(await source.measure(ctx)).value for _ in range(n)]


@pytest.mark.timeout(30)
async def test_simulated_check_is_reproducible_and_regresses_as_configured(tmp_path):
    estate = check_estate(tmp_path)
    old = Context("dev-1", "dev", "op", "1.0", "1.0")
    new = Context("dev-1", "dev", "op", "2.0", "1.0")
    elsewhere = Context("prod-1", "prod", "op", "2.0", "1.0")

    healthy = await readings(estate, old)
    assert healthy == await readings(estate, old)  # same seed, same series
    assert healthy != await readings(check_estate(tmp_path, seed=4), old)
    assert all(v is not None and 0.05 < v < 0.15 for v in healthy)  # around base 0.1

    regressed = await readings(estate, new)
    assert all(v is not None and 0.2 < v < 0.4 for v in regressed)  # 3× in dev only
    assert all(v is not None and v < 0.15 for v in await readings(estate, elsewhere))
