"""The rollout orchestrator: waves in order, bounded concurrent applies, soaks, gates, commands.

A :class:`Rollout` drives one plan. It publishes everything it does on an :class:`EventBus` (the
one stream the console, the headless printer and history read). Its operator commands and live
state come from :class:`sluice.engine.rollout.controls.RolloutControls`; one target's apply or rollback from
:class:`sluice.engine.rollout.jobs.JobRunner`; baselines and soaks from :mod:`sluice.engine.rollout.soak`.
"""

from __future__ import annotations

import asyncio
from typing import Any, NoReturn

from sluice.engine.checks.base import CheckSource
from sluice.engine.model.plan import Wave
from sluice.engine.rollout.controls import APPROVED, BYPASSED
from sluice.engine.rollout.events import (
    Notice,
    RolloutFinished,
    RolloutStarted,
    WaveApplied,
    WaveFinished,
    WaveStarted,
)
from sluice.engine.rollout.governance import Governed
from sluice.engine.rollout.jobs import run_bounded
from sluice.engine.rollout.rearguard import RearGuard
from sluice.engine.rollout.soak import run_soak
from sluice.engine.rollout.state import (
    FAILED,
    NOOP,
    OK,
    PENDING,
    UNKNOWN,
    Finish,
    Outcome,
    RolloutOutcome,
    TargetState,
    stops_driving,
)


def describe_failure(exc: BaseException) -> str:
    """``Type: message`` of the first real failure (task groups wrap them in a group)."""
    others = 0
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        others += len(exc.exceptions) - 1
        exc = exc.exceptions[0]
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text + (f" (and {others} more)" if others else "")


class Rollout(Governed):
    """Drives ``plan`` across ``estate``: waves in order, bounded applies, soaks and gates."""

    # ------------------------------------------------------------------ running

    async def run(self) -> Outcome:
        """Run the rollout to its end; returns the outcome (and emits ``RolloutFinished``)."""
        self._task = asyncio.current_task()  # type: ignore[assignment]
        self.rear_guard = RearGuard(self)
        self._announce()
        try:
            await self._drive()
        except Finish as finish:
            self.outcome = finish.outcome
        except Exception as exc:  # a defect or an unforeseen failure inside the engine
            if stops_driving(exc):
                raise
            self.outcome = self._crashed(exc)
        finally:
            await self._cancel_side_tasks()
            await self._close()
        self._set_state(self.outcome.outcome, detail=self.outcome.summary)
        self.bus.emit(
            RolloutFinished,
            rollout_id=self.rollout_id,
            outcome=self.outcome.outcome,
            exit_code=self.outcome.exit_code,
            summary=self.outcome.summary,
        )
        return self.outcome

    def _announce(self) -> None:
        """``RolloutStarted``, and a warning about applies a stopped sluice left unknown."""
        self.bus.emit(
            RolloutStarted,
            rollout_id=self.rollout_id,
            estate=self.estate.name,
            module=self.plan.module,
            version=self.plan.version,
            actor=self.actor,
            plan=self.plan.to_dict(),
            resumed=self.resumed,
        )
        self._set_phase("running")
        unknown = sorted(t.name for t in self.targets.values() if t.status == UNKNOWN)
        if unknown:
            what = (
                "adopting those still running or finished, re-applying the rest"
                if self.options.reapply_unknown
                else "adopting those still running or finished, the rest left for the operator"
            )
            self.bus.emit(
                Notice,
                level="warning",
                message=f"{len(unknown)} apply(s) of unknown outcome (started, never finished): {', '.join(unknown)} — {what}",
            )

    async def _drive(self) -> NoReturn:
        """The waves from ``start_wave`` on, then the rear guard; always ends raising
        :class:`Finish` (an abort's cancellation too)."""
        try:
            if self.options.rollback_only:
                await self._run_rollback_only()
            until = self.options.until_wave
            for wave in self.plan.waves:
                if wave.number < self.start_wave:
                    continue
                if until is not None and wave.number > until:
                    raise Finish(
                        RolloutOutcome.STOPPED,
                        f"stopped after wave {until} as asked; continue with `sluice resume`",
                    )
                await self._run_wave(wave)
            await self._rear_guard_drain()
            raise Finish(RolloutOutcome.DONE, self._summary())
        except asyncio.CancelledError:
            if self._aborting is None:
                raise
            await self._cancel_side_tasks()
            raise self._stopped() from None

    def _stopped(self) -> Finish:
        """How the rollout ends when it was cancelled on purpose: aborted by an operator,
        superseded by a new rollout, or stopped because history cannot be written."""
        assert self._aborting is not None
        actor, reason = self._aborting
        if self.superseded_by is not None:
            return Finish(
                RolloutOutcome.SUPERSEDED,
                f"superseded by {self.superseded_by} (stopped by {actor})",
            )
        if self._abort_outcome != "aborted":
            return Finish(self._abort_outcome, reason)
        return Finish(
            RolloutOutcome.ABORTED, f"aborted by {actor}" + (f": {reason}" if reason else "")
        )

    def _crashed(self, exc: BaseException) -> Outcome:
        """The engine failed: say so on the stream (the console, the log, history) and end
        ``crashed`` — resumable, like a driver that died, so `sluice resume` continues."""
        where = self.on_crash(exc) if self.on_crash is not None else None
        error = describe_failure(exc)
        trace = f"; traceback in {where}" if where else ""
        self.bus.emit(Notice, level="error", message=f"the engine failed: {error}{trace}")
        return Outcome(
            RolloutOutcome.CRASHED,
            f"the engine failed ({error}){trace}; continue with "
            f"`sluice resume {self.estate.path} {self.rollout_id}`",
        )

    async def _adopt_unknown(self, wave: Wave) -> set[str]:
        """Adopt the wave's applies of unknown outcome a stopped sluice left running or finished
        (never run again: their real outcome is recorded); the rest stay unknown."""
        unknown = [self.targets[t.name] for t in wave.targets]
        unknown = [t for t in unknown if t.status == UNKNOWN and t.name not in self.stopped_before]
        adopted: set[str] = set()

        async def adopt(target: TargetState) -> None:
            if await self.jobs.adopt(wave.number, target):
                adopted.add(target.name)

        if unknown:
            await run_bounded(unknown, max(1, wave.channel.max_parallel), adopt)
        return adopted

    async def _run_wave(self, wave: Wave) -> None:
        """One wave: baselines, applies, the soak, then what its gate's verdict calls for."""
        state = self.waves[wave.number]
        await self.clear_to_start(wave)
        self.current_wave = wave.number
        self.bus.emit(
            WaveStarted,
            wave=wave.number,
            channel=wave.channel.name,
            name=wave.name,
            targets=tuple(state.targets),
        )
        redo = (PENDING, UNKNOWN, FAILED) if self.options.reapply_unknown else (PENDING, FAILED)
        todo = [self.targets[t.name] for t in wave.targets if self.targets[t.name].status in redo]
        attempted = [self.targets[t.name] for t in wave.targets]
        attempted = [t for t in attempted if t.status != NOOP]  # the gate judges these
        if not attempted:
            state.status = "skipped"
            self.bus.emit(WaveFinished, wave=wave.number, outcome="skipped")
            return
        checks = [self.estate.checks[name] for name in wave.channel.checks]
        sources = {spec.name: self._check(spec.name) for spec in checks}
        await self._rear_guard_check(wave)
        gate = await self._baselines(wave, checks, sources, attempted)
        await self._apply_wave(wave, todo)
        await self._settle(wave)
        state.status = "soaking"
        self.soak_ended.clear()
        self.soak_bypassed = False
        self._set_phase("soaking")
        verdict, reasons = await run_soak(self, wave, checks, sources, gate, attempted)
        state.verdict, state.reasons = verdict, reasons
        await self._rear_guard_check(wave)
        state.status = await self._act_on_verdict(wave, verdict, attempted)
        if verdict == "passed" and state.status in ("passed", APPROVED):
            self.rear_guard.watch(wave, checks, sources, gate, attempted)
        self.bus.emit(WaveFinished, wave=wave.number, outcome=state.status)
        if self.paused:
            self._set_phase("running")
            await self._unpaused.wait()

    async def _settle(self, wave: Wave) -> None:
        """After the applies: wait for the operator while the failures exceed the budget or
        targets of unknown outcome are left — never gate a wave as if they were done."""
        await self._rear_guard_check(wave)
        while self._over_budget(wave):
            decision = await self._await_operator(wave, "budget", self._budget_text(wave))
            if decision == BYPASSED:
                break
        unknown = [t.name for t in wave.targets if self.targets[t.name].status == UNKNOWN]
        if unknown:  # left for the operator (--no-reapply-unknown)
            await self._await_operator(
                wave,
                "unknown",
                f"{len(unknown)} target(s) of unknown outcome: {', '.join(unknown)}; retry or bypass",
            )

    async def _act_on_verdict(self, wave: Wave, verdict: str, attempted: list[TargetState]) -> str:
        """The wave's status once its gate's ``verdict`` is acted on: a manual gate's approval,
        an inconclusive one's decision; a failed gate halts (rolling the wave back first where
        the channel says so) until the operator bypasses it."""
        if verdict == "bypassed":
            return BYPASSED
        if verdict == "passed":
            if wave.channel.gate != "manual":
                return "passed"
            return await self._await_operator(
                wave, "awaiting_approval", "gate passed; approve to continue"
            )
        if verdict != "failed":
            return await self._await_operator(
                wave, "inconclusive", "gate inconclusive; approve or bypass"
            )
        state = self.waves[wave.number]
        if wave.channel.on_failure == "rollback":
            await self._rollback(wave, attempted, actor="sluice", reason="gate failed")
            state.status = "rolled_back"
            await self._await_operator(wave, "rolled_back", "gate failed; the wave was rolled back")
        else:
            state.status = "failed"
            await self._await_operator(wave, "halted", "gate failed")
        return BYPASSED  # only a bypass goes on from a failed gate (an abort ends the rollout)

    async def _review_plans(self, wave: Wave, todo: list[TargetState]) -> None:
        """``review = "plans"``: make the wave's plans and wait for their approval (review.py)."""
        from sluice.engine.rollout.review import plan_wave

        self._set_phase("planning", wave.number, "making the wave's plans for review")
        review = await plan_wave(self, wave, todo)
        if not review.plans:
            return  # nothing to review: every plan failed (the applies will say why) or no tofu
        self.review = review
        what = f"{len(review.plans)} plan(s)" + (
            ", some destroy or replace resources" if review.destroys else ""
        )
        try:
            if self.options.interactive:
                decision = await self._await_operator(wave, "review_plans", f"{what}; review them")
            elif self.options.approve_destroy or (self.options.approve and not review.destroys):
                decision = APPROVED
                self._operator(
                    "approve_plans",
                    self.actor,
                    f"{'--approve-destroy' if self.options.approve_destroy else '--approve'}: "
                    f"{review.hashes()}",
                    wave=wave.number,
                )
            else:
                self._set_phase("review_plans", wave.number, what)
                needs = "--approve-destroy" if review.destroys else "--approve"
                raise Finish(
                    RolloutOutcome.STOPPED,
                    f"wave {wave.number} ({wave.name}): {what}; they await review — see them with "
                    f"`sluice plan --preview`, continue with `sluice resume {needs}` or in the console",
                )
        finally:
            self.review = None
        # Bypassed (recorded, with its reason): the applies plan again, unreviewed.
        review.bypass() if decision == BYPASSED else review.use()

    async def _before_retry(self, state: TargetState) -> bool:
        """A retry on a ``review = "plans"`` channel plans again for review (review.py)."""
        from sluice.engine.rollout.review import review_retry

        return await review_retry(self, state)

    async def _baselines(
        self,
        wave: Wave,
        checks: list[Any],
        sources: dict[str, CheckSource],
        targets: list[TargetState],
    ) -> Any:
        from sluice.engine.rollout.soak import take_baselines

        return await take_baselines(self, wave, checks, sources, targets)

    async def _apply_wave(self, wave: Wave, todo: list[TargetState]) -> None:
        """Apply ``todo`` (its plans reviewed first where the channel asks), bounded by the
        channel's ``max_parallel``; applies a stopped sluice left running are adopted instead."""
        if wave.channel.review == "plans" and todo:
            await self._review_plans(wave, todo)
        self.waves[wave.number].status = "applying"
        self._set_phase("running")
        adopted = await self._adopt_unknown(wave)
        todo = [t for t in todo if t.name not in adopted]

        async def one(target: TargetState) -> None:
            await self._unpaused.wait()
            if self._over_budget(wave) or self.rear_guard.tripped:
                return
            await self.jobs.run(wave.number, target, "apply")

        self._applying = wave.number
        try:
            await run_bounded(todo, wave.channel.max_parallel, one)
        finally:
            self._applying = None
        counts = self._counts(wave)
        self.bus.emit(
            WaveApplied,
            wave=wave.number,
            ok=counts[OK],
            failed=counts[FAILED],
            tolerated=wave.failure_budget,
            skipped=counts[PENDING],
            budget_exceeded=self._over_budget(wave),
            summary=self._budget_text(wave),
        )

    async def _rear_guard_check(self, wave: Wave) -> None:
        """Halt when the rear guard saw an earlier wave regress (the operator decides, live)."""
        if self.rear_guard.tripped is None:
            return
        detail = self.rear_guard.tripped
        if not self.options.interactive:
            raise Finish(
                RolloutOutcome.HALTED, f"halted at wave {wave.number} ({wave.name}): {detail}"
            )
        await self._await_operator(wave, "halted", detail)  # bypass goes on; abort ends
        self.rear_guard.tripped = None

    async def _rear_guard_drain(self) -> None:
        """The last wave is done: wait for the watches still running, then judge them."""
        if self.rear_guard.watching:
            self._set_phase("watching", self.current_wave, "rear guard: watching passed waves")
            await self.rear_guard.drain()
        await self._rear_guard_check(self.plan.waves[-1])

    def _check(self, name: str) -> CheckSource:
        if name not in self._checks:
            spec = self.estate.checks[name]
            self._checks[name] = self._check_factory(spec, self.estate, self.clock, self.resources)
        return self._checks[name]

    async def _close(self) -> None:
        await self.rear_guard.close()  # before the checks' sources close under it
        await self.jobs.close(list(self._checks.values()))
