"""Engine overhead: a 10,000-target rollout against the floor of 10,000 bare asyncio tasks.

Run: ``.venv/bin/python bench/bench_engine.py [--targets N] [--repeat R] [--profile]``

The rollout has 5 channels of equal size, each one wave, ``max_parallel = 1000``, zero soak, no
checks, and a simulated executor whose applies take zero time (``Clock(0)``): what is left is the
engine itself — scheduling, state, events. The floor is the same number of bare tasks doing the
same awaits as a zero-duration simulated apply (four ``asyncio.sleep(0)``), gathered in one go, in
the same process. Each repetition measures both; the medians are printed with the per-target
overhead and the ratio. Goal (issue 3): the whole rollout under 3 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tomli_w  # noqa: E402

from sluice.engine.model.estate import Estate, parse_estate  # noqa: E402
from sluice.engine.model.plan import Plan, make_plan  # noqa: E402
from sluice.engine.rollout.events import EventBus  # noqa: E402
from sluice.engine.rollout.options import RolloutOptions  # noqa: E402
from sluice.engine.rollout.orchestrator import Rollout  # noqa: E402
from sluice.engine.support.clock import Clock  # noqa: E402

CHANNELS = 5
MAX_PARALLEL = 1000
GOAL_SECONDS = 3.0
#: awaits of a zero-duration simulated apply (three output steps, then the finish)
SIMULATED_AWAITS = 4


def build_estate(targets: int) -> Estate:
    per_channel = targets // CHANNELS
    doc = {
        "estate": {"name": "bench"},
        "channels": [
            {"name": f"ch{c}", "max_parallel": MAX_PARALLEL, "max_failures": 0, "soak": "0s"}
            for c in range(CHANNELS)
        ],
        "executors": {"sim": {"kind": "simulated", "duration": "0s", "failure_rate": 0.0}},
        "modules": {"op": {"versions": ["1.0", "2.0"], "initial": "1.0"}},
        "targets": {
            f"t{c}-{i:05d}": {"channel": f"ch{c}", "executor": "sim"}
            for c in range(CHANNELS)
            for i in range(per_channel)
        },
    }
    text = tomli_w.dumps(doc)
    return parse_estate(text, Path("/tmp/bench_estate.toml"))


async def run_rollout(estate: Estate, plan: Plan, subscriber: bool) -> float:
    bus = EventBus()
    subscription = bus.subscribe(maxsize=1_000_000) if subscriber else None
    rollout = Rollout(
        estate,
        plan,
        bus=bus,
        clock=Clock(0),
        options=RolloutOptions(interactive=False),
        actor="bench",
    )
    started = time.perf_counter()
    outcome = await rollout.run()
    elapsed = time.perf_counter() - started
    if outcome.outcome != "done":
        raise SystemExit(f"the benchmark rollout did not complete: {outcome}")
    if subscription is not None:
        subscription.close()
    return elapsed


async def bare_task() -> None:
    for _ in range(SIMULATED_AWAITS):
        await asyncio.sleep(0)


async def run_floor(targets: int) -> float:
    started = time.perf_counter()
    await asyncio.gather(*(bare_task() for _ in range(targets)))
    return time.perf_counter() - started


async def measure(estate: Estate, plan: Plan, repeat: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"rollout": [], "rollout+subscriber": [], "floor": []}
    for _ in range(repeat):
        for name in results:
            gc.collect()
            if name == "floor":
                results[name].append(await run_floor(len(plan.targets)))
            else:
                results[name].append(await run_rollout(estate, plan, name != "rollout"))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="cProfile one rollout instead")
    args = parser.parse_args()

    started = time.perf_counter()
    estate = build_estate(args.targets)
    plan = make_plan(estate, "op", "2.0")
    setup = time.perf_counter() - started
    targets = len(plan.targets)
    print(
        f"estate: {targets} targets, {CHANNELS} channels, {len(plan.waves)} waves, "
        f"max_parallel {MAX_PARALLEL} (parse + plan {setup:.2f} s, not timed below)"
    )

    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        asyncio.run(run_rollout(estate, plan, subscriber=False))
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
        return 0

    results = asyncio.run(measure(estate, plan, args.repeat))
    floor = statistics.median(results["floor"])
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{args.repeat} repetitions, medians (min–max); load average {load}:")
    for name, times in results.items():
        median = statistics.median(times)
        per_target = median / targets * 1e6
        line = (
            f"  {name:<20} {median:7.3f} s  ({min(times):.3f}–{max(times):.3f})  "
            f"{per_target:7.1f} µs/target"
        )
        if name != "floor":
            overhead = (median - floor) / targets * 1e6
            line += f"  overhead {overhead:6.1f} µs/target  ratio {median / floor:5.1f}× floor"
        print(line)
    rollout = statistics.median(results["rollout"])
    verdict = "meets" if rollout < GOAL_SECONDS else "MISSES"
    print(f"goal: whole rollout under {GOAL_SECONDS:.0f} s — {verdict} it ({rollout:.2f} s)")
    return 0 if rollout < GOAL_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
