"""Plan review, the gate of a ``review = "plans"`` channel: plan, group, show, approve, apply.

Before a wave's applies, each of its targets with a ``tofu`` executor makes its saved plan (the
rollout's own executor, so the apply that follows is of exactly that file). The plans are
normalised and grouped (:mod:`sluice.engine.executors.tofu_plan`), published as one
``PlansReviewed`` event (the console's review screen and the headless printer show it), and, once
approved, handed back to the executors: each apply then applies its reviewed file, after checking
that its sha256 is still the approved one. The approval is recorded with those hashes.

A retry (``t``) of a target on such a channel plans again (:func:`review_retry`): a new plan
whose normalised hash is the approved one is used as it is; any other waits for its own review
(``a`` shows it, approving records its hash) — an apply never applies a plan nobody approved.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sluice.engine.executors.base import Job
from sluice.engine.executors.tofu import MadePlan, TofuExecutor, ToolError
from sluice.engine.executors.tofu_plan import destroys, group_plans
from sluice.engine.rollout.events import ApplyOutput, Notice, PlansReviewed
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
    #: the jobs whose plan failed (their applies are refused, saying why)
    failed: dict[str, tuple[TofuExecutor, Job]] = field(default_factory=dict)
    destroys: bool = False
    #: the groups as published (``PlanGroup.to_dict()``), largest first
    groups: tuple[dict[str, Any], ...] = ()
    #: a retry's review: the operator's decision (``advance`` approves, ``bypass`` declines)
    decided: asyncio.Future[bool] | None = None

    def pending(self) -> bool:
        """A retry's review waits for the operator (the wave's own waits at the gate)."""
        return self.decided is not None and not self.decided.done()

    def decide(self, approved: bool) -> None:
        assert self.decided is not None
        self.decided.set_result(approved)

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
        for target, (executor, job) in self.failed.items():
            executor.reviews.failed(job, self.errors[target])

    def bypass(self) -> None:
        """Bypassed (recorded with a reason): each target's apply plans for itself."""
        for executor, job, _ in self.plans.values():
            executor.reviews.bypass(job)
        for executor, job in self.failed.values():
            executor.reviews.bypass(job)


async def plan_wave(rollout: RolloutControls, wave: Wave, todo: list[TargetState]) -> Review:
    """Make, group and publish the plans of ``todo`` (the wave's targets to apply)."""
    review = await make_plans(rollout, wave, todo)
    publish(rollout, review)
    return review


async def make_plans(rollout: RolloutControls, wave: Wave, todo: list[TargetState]) -> Review:
    """The saved plans of ``todo`` (those with a tofu executor), not yet published."""
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
            review.failed[target.name] = (executor, job)
            return
        review.plans[target.name] = (executor, job, plan)

    await run_bounded(todo, wave.channel.max_parallel, one)
    return review


def publish(rollout: RolloutControls, review: Review) -> None:
    """Group the plans and publish them (one ``PlansReviewed`` event)."""
    normalised = {t: p.normalised or {} for t, (_, _, p) in review.plans.items() if p.changes}
    groups = group_plans(normalised, {t: rollout.estate.targets[t].channel for t in normalised})
    review.destroys = any(destroys(g.plan) for g in groups)
    review.groups = tuple(g.to_dict() for g in groups)
    rollout.bus.emit(
        PlansReviewed,
        wave=review.wave,
        groups=review.groups,
        plans={t: p.file_sha256 for t, (_, _, p) in sorted(review.plans.items())},
        destroys=review.destroys,
        errors=dict(review.errors),
    )


async def review_retry(rollout: RolloutControls, target: TargetState) -> bool:
    """Before a retry of ``target``: on a ``review = "plans"`` channel, plan again and have the
    new plan approved unless it is the approved one. True when the retry may apply."""
    wave = rollout.plan.waves[target.wave - 1]
    executor = rollout.jobs.executor(target.executor)
    if wave.channel.review != "plans" or not isinstance(executor, TofuExecutor):
        return True
    review = await make_plans(rollout, wave, [target])
    made = review.plans.get(target.name)
    if made is None or made[2].changes == 0 or made[0].reviews.same_as_approved(made[1], made[2]):
        if made is not None and made[2].changes:
            rollout.bus.emit(
                ApplyOutput,
                target=target.name,
                stream="stdout",
                line="sluice: the new plan is the approved one (same normalised hash): using it",
            )
        review.use()  # a failed plan: its apply is refused, saying why
        return True
    if not rollout.options.interactive:  # headless: the rollout's --approve / --approve-destroy
        publish(rollout, review)
        if not (
            rollout.options.approve_destroy or (rollout.options.approve and not review.destroys)
        ):
            needs = "--approve-destroy" if review.destroys else "--approve"
            return _declined(rollout, target, f"its new plan needs a review ({needs})")
        how = "--approve-destroy" if rollout.options.approve_destroy else "--approve"
        rollout._operator(
            "approve_plans", rollout.actor, f"{how}: {review.hashes()}", wave=wave.number
        )
        review.use()
        return True
    if rollout.review is not None:
        return _declined(
            rollout,
            target,
            "its new plan needs a review, and another plan "
            "review is waiting: approve that first, then retry",
        )
    return await _operator_review(rollout, review, target)


async def _operator_review(rollout: RolloutControls, review: Review, target: TargetState) -> bool:
    """The console's: show the retry's new plan (``a``) and wait for approve or bypass."""
    publish(rollout, review)
    review.decided = asyncio.get_running_loop().create_future()
    rollout.review = review
    rollout.bus.emit(
        Notice,
        level="warning",
        message=f"retry of {target.name}: its new plan differs from the approved one; "
        "press a to review it (bypass declines it)",
    )
    try:
        approved = await review.decided
    finally:
        rollout.review = None
    if not approved:
        return _declined(rollout, target, "its new plan was declined")
    review.use()
    return True


def _declined(rollout: RolloutControls, target: TargetState, why: str) -> bool:
    target.reason = f"retry not applied: {why}"
    rollout.bus.emit(Notice, level="warning", message=f"{target.name}: {target.reason}")
    return False
