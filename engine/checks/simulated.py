"""Simulated health: generated, reproducible values that a ``[simulation]`` regression can spoil."""

from __future__ import annotations

import math
import random
from collections import Counter
from typing import TYPE_CHECKING

from sluice.engine.checks.base import Reading
from sluice.engine.model.template import Context

if TYPE_CHECKING:
    from sluice.engine.model.estate import CheckSpec, Estate
    from sluice.engine.support.clock import Clock
    from sluice.engine.support.resources import Resources

#: Healthy levels for well-known metric names, when the check does not give ``base``.
DEFAULT_BASES = {"p99_latency": 0.12, "error_rate": 0.002, "restarts": 0.0}


class SimulatedCheck:
    def __init__(self, spec: CheckSpec, estate: Estate, clock: Clock, resources: Resources):
        self.spec = spec
        self.seed = estate.seed
        self.metric = str(spec.settings.get("metric") or spec.name)
        base = spec.settings.get("base")
        self.base = float(base if base is not None else DEFAULT_BASES.get(self.metric, 1.0))
        self.noise = float(spec.settings.get("noise", 0.08) or 0.0)
        self.regressions = [r for r in estate.regressions if r.metric == self.metric]
        self.counts: Counter[str] = Counter()
        #: measurements of each target on each version: the estate time it has run it for
        self.on_version: Counter[tuple[str, str]] = Counter()

    def factor(self, ctx: Context) -> float:
        # A regression with ``after`` starts once the target has run the version that long in
        # estate time, counted in measurements × interval: reproducible at any --time-scale.
        ran_for = (self.on_version[(ctx.target, ctx.version)] - 1) * self.spec.interval
        for r in self.regressions:
            if (
                r.module == ctx.module
                and r.version == ctx.version
                and (not r.channels or ctx.channel in r.channels)
                and ran_for >= r.after
            ):
                return r.factor
        return 1.0

    async def measure(self, ctx: Context) -> Reading:
        self.counts[ctx.target] += 1
        self.on_version[(ctx.target, ctx.version)] += 1
        n = self.counts[ctx.target]
        rng = random.Random(f"{self.seed}:{self.spec.name}:{ctx.target}:{n}")
        wobble = 1 + self.noise * (rng.gauss(0, 1) * 0.6 + math.sin(n / 3) * 0.4)
        return Reading(max(0.0, self.base * self.factor(ctx) * wobble))

    async def baseline(self, ctx: Context) -> Reading:
        return await self.measure(ctx)

    async def close(self) -> None:
        return None
