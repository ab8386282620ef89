"""Plan review, the gate of a ``review = "plans"`` channel: plan, group, show, approve, apply.

Before a wave's applies, each of its targets with a ``tofu`` executor makes its saved plan (the
rollout's own executor, so the apply that follows is of exactly that file). The plans are
normalised and grouped (:mod:`sluice.engine.executors.tofu_plan`), published as one
``PlansReviewed`` event (the console's review screen and the headless printer show it), and, once
approved, handed back to the executors: each apply then applies its reviewed file, after checking
that its sha256 is still the approved one. The approval is recorded with those hashes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sluice.engine.executors.base import Job
from sluice.engine.executors.tofu import MadePlan, TofuExecutor, ToolError
from sluice.engine.executors.tofu_plan import destroys, group_plans
from sluice.engine.rollout.events import ApplyOutput, PlansReviewed
from sluice.engine.rollout.jobs import run_bounded
from sluice.engine.rollout.state import TargetState

if TYPE_CHECKING:
    from sluice.engine.model.plan import Wave
    from sluice.engine.rollout.controls import RolloutControls


@dataclass
class Review:
    """One wave's reviewed plans and the jobs they were made for."""

    wave: int
    plans: dict[str, tuple[TofuExecutor, Job, MadePlan]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    destroys: bool = False
    #: the groups as published (``PlanGroup.to_dict()``), largest first
    groups: tuple[dict[str, Any], ...] = ()

    def hashes(self) -> str:
        """ "eph-1=3f2a…, eph-2=…": the plan files' sha256 (first 16 hex), as recorded."""
        return ", ".join(
            f"{target}={plan.file_sha256[:16]}"
            for target, (_, _, plan) in sorted(self.plans.items())
        )

    def use(self) -> None:
        """Approved: each target's next apply applies its reviewed plan file."""
        for executor, job, plan in self.plans.values():
            executor.use_plan(job, plan)


async def plan_wave(rollout: RolloutControls, wave: Wave, todo: list[TargetState]) -> Review:
    """Make, group and publish the plans of ``todo`` (the wave's targets to apply)."""
    review = Review(wave.number)

    async def one(target: TargetState) -> None:
        executor = rollout.jobs.executor(target.executor)
        if not isinstance(executor, TofuExecutor):
            return
        job = Job(
            target=target.name,
            channel=target.channel,
            module=rollout.plan.module,
            version=target.to_version,
            previous_version=target.version,
            action="apply",
            vars=rollout.estate.targets[target.name].vars,
        )

        def sink(stream: str, line: str) -> None:
            rollout.bus.emit(
                ApplyOutput, target=target.name, stream=stream, line=rollout.jobs.mask(line)
            )

        deadline = asyncio.get_running_loop().time() + executor.timeout
        try:
            work = await executor.prepare(job, sink, deadline)
            plan = await executor.make_plan(work, sink, deadline, job, show=True)
        except ToolError as exc:
            review.errors[target.name] = rollout.jobs.mask(str(exc))
            return
        review.plans[target.name] = (executor, job, plan)

    await run_bounded(todo, wave.channel.max_parallel, one)
    normalised = {t: p.normalised or {} for t, (_, _, p) in review.plans.items() if p.changes}
    groups = group_plans(normalised, {t: rollout.estate.targets[t].channel for t in normalised})
    review.destroys = any(destroys(g.plan) for g in groups)
    review.groups = tuple(g.to_dict() for g in groups)
    rollout.bus.emit(
        PlansReviewed,
        wave=wave.number,
        groups=review.groups,
        plans={t: p.file_sha256 for t, (_, _, p) in sorted(review.plans.items())},
        destroys=review.destroys,
        errors=dict(review.errors),
    )
    return review
