"""The simulated executor: no infrastructure, for the sample estate, demos and tests.

Durations come from a range, failures from a rate (plus named ``fail_targets``), and
``hang_targets`` never finish (until the timeout or an abort). Everything is drawn from a random
generator seeded by the estate's ``[simulation] seed``, the target and the attempt, so the same
estate plays the same way every time.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import TYPE_CHECKING

from sluice.engine.executors.base import ApplyResult, Job, OutputSink
from sluice.engine.model.units import format_duration

if TYPE_CHECKING:
    from sluice.engine.model.estate import Estate, ExecutorSpec
    from sluice.engine.support.clock import Clock
    from sluice.engine.support.resources import Resources


class SimulatedExecutor:
    def __init__(self, spec: ExecutorSpec, estate: Estate, clock: Clock, resources: Resources):
        self.spec = spec
        self.seed = estate.seed
        self.clock = clock
        duration: tuple[float, float] = spec.settings.get("duration") or (1.0, 3.0)
        self.low, self.high = duration
        self.failure_rate = float(spec.settings.get("failure_rate") or 0.0)
        self.fail_targets = set(spec.settings.get("fail_targets") or ())
        self.hang_targets = set(spec.settings.get("hang_targets") or ())
        self.timeout = float(spec.settings.get("timeout") or 900.0)
        self.attempts: Counter[tuple[str, str]] = Counter()

    def describe(self, job: Job) -> str:
        return f"simulated {job.action} of {job.module} {job.previous_version} → {job.version} on {job.target}"

    async def apply(self, job: Job, output: OutputSink) -> ApplyResult:
        job.launching()
        self.attempts[(job.target, job.action)] += 1
        attempt = self.attempts[(job.target, job.action)]
        rng = random.Random(
            f"{self.seed}:{self.spec.name}:{job.target}:{job.version}:{job.action}:{attempt}"
        )
        duration = rng.uniform(self.low, self.high)
        fails = job.action == "apply" and (
            job.target in self.fail_targets or rng.random() < self.failure_rate
        )
        if job.target in self.hang_targets and job.action == "apply":
            output("stdout", f"{job.target}: acquiring state lock…")
            await asyncio.sleep(self.clock.scaled(self.timeout))
            return ApplyResult(False, f"timed out after {format_duration(self.timeout)}")
        if duration > self.timeout:
            await asyncio.sleep(self.clock.scaled(self.timeout))
            return ApplyResult(False, f"timed out after {format_duration(self.timeout)}")
        steps = [
            f"{job.target}: refreshing state",
            f"{job.target}: {job.module} {job.previous_version} → {job.version}: 3 to change",
            f"{job.target}: applying",
        ]
        for line in steps:
            output("stdout", line)
            await self.clock.sleep(duration / (len(steps) + 1))
        await self.clock.sleep(duration / (len(steps) + 1))
        if fails:
            output(
                "stderr",
                f"{job.target}: Error: timeout waiting for StatefulSet postgres to become ready",
            )
            return ApplyResult(False, "timeout waiting for StatefulSet postgres to become ready", 1)
        output("stdout", f"{job.target}: apply complete ({format_duration(duration)})")
        return ApplyResult(True, "", 0)

    async def close(self) -> None:
        return None
