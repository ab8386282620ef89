"""The rollout orchestrator: waves in order, bounded concurrent applies, soaks, gates, commands.

A :class:`Rollout` drives one plan. It publishes everything it does on an :class:`EventBus` (the
one stream the console, the headless printer and history read). Its operator commands and live
state come from :class:`sluice.engine.rollout.controls.RolloutControls`; one target's apply or rollback from
:class:`sluice.engine.rollout.jobs.JobRunner`; baselines and soaks from :mod:`sluice.engine.rollout.soak`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sluice.engine.checks.base import CheckSource
from sluice.engine.model.plan import Wave
from sluice.engine.rollout.controls import APPROVED, BYPASSED, RolloutControls
from sluice.engine.rollout.events import (
    Notice,
    OperatorAction,
    RolloutFinished,
    RolloutStarted,
    WaveApplied,
    WaveFinished,
    WaveStarted,
)
from sluice.engine.rollout.jobs import run_bounded
from sluice.engine.rollout.soak import run_soak
from sluice.engine.rollout.state import (
    FAILED,
    NOOP,
    OK,
    PENDING,
    UNKNOWN,
    Outcome,
    TargetState,
)


class _Finish(Exception):
    def __init__(self, outcome: str, summary: str):
        self.outcome = Outcome(outcome, summary)


class Rollout(RolloutControls):
    """Drives ``plan`` across ``estate``: waves in order, bounded applies, soaks and gates."""

    # ------------------------------------------------------------------ running

    async def run(self) -> Outcome:
        """Run the rollout to its end; returns the outcome (and emits ``RolloutFinished``)."""
        self._task = asyncio.current_task()  # type: ignore[assignment]
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
                "re-applying them (applies are idempotent)"
                if self.reapply_unknown
                else "left for the operator"
            )
            self.bus.emit(
                Notice,
                level="warning",
                message=f"{len(unknown)} apply(s) of unknown outcome (started, never finished): {', '.join(unknown)} — {what}",
            )
        try:
            try:
                if self.rollback_only:
                    await self._run_rollback_only()
                for wave in self.plan.waves:
                    if wave.number < self.start_wave:
                        continue
                    if self.until_wave is not None and wave.number > self.until_wave:
                        raise _Finish(
                            "stopped",
                            f"stopped after wave {self.until_wave} as asked; continue with `sluice resume`",
                        )
                    await self._run_wave(wave)
                raise _Finish("done", self._summary())
            except asyncio.CancelledError:
                if self._aborting is None:
                    raise
                await self._cancel_side_tasks()
                actor, reason = self._aborting
                if self.superseded_by is not None:
                    raise _Finish(
                        "superseded", f"superseded by {self.superseded_by} (stopped by {actor})"
                    ) from None
                raise _Finish(
                    "aborted", f"aborted by {actor}" + (f": {reason}" if reason else "")
                ) from None
        except _Finish as finish:
            self.outcome = finish.outcome
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

    async def _run_wave(self, wave: Wave) -> None:
        state = self.waves[wave.number]
        self.current_wave = wave.number
        self.bus.emit(
            WaveStarted,
            wave=wave.number,
            channel=wave.channel.name,
            name=wave.name,
            targets=tuple(state.targets),
        )
        redo = (PENDING, UNKNOWN, FAILED) if self.reapply_unknown else (PENDING, FAILED)
        todo = [self.targets[t.name] for t in wave.targets if self.targets[t.name].status in redo]
        attempted = [t for t in wave.targets if self.targets[t.name].status != NOOP]
        if not attempted:
            state.status = "skipped"
            self.bus.emit(WaveFinished, wave=wave.number, outcome="skipped")
            return
        checks = [self.estate.checks[name] for name in wave.channel.checks]
        sources = {spec.name: self._check(spec.name) for spec in checks}
        gate_targets = [self.targets[t.name] for t in attempted]
        gate_and_baselines = await self._baselines(wave, checks, sources, gate_targets)
        state.status = "applying"
        self._set_phase("running")
        await self._apply_wave(wave, todo)
        while self._over_budget(wave):
            decision = await self._await_operator(wave, "budget", self._budget_text(wave))
            if decision == BYPASSED:
                break
        unknown = [t.name for t in wave.targets if self.targets[t.name].status == UNKNOWN]
        if unknown:
            # Left for the operator (--no-reapply-unknown): never gate or go on as if they were done.
            await self._await_operator(
                wave,
                "unknown",
                f"{len(unknown)} target(s) of unknown outcome: {', '.join(unknown)}; retry or bypass",
            )
        state.status = "soaking"
        self.soak_ended.clear()
        self.soak_bypassed = False
        self._set_phase("soaking")
        verdict, reasons = await run_soak(
            self, wave, checks, sources, gate_and_baselines, gate_targets
        )
        state.verdict, state.reasons = verdict, reasons
        if verdict == "bypassed":
            state.status = BYPASSED
        elif verdict == "passed":
            if wave.channel.gate == "manual":
                decision = await self._await_operator(
                    wave, "awaiting_approval", "gate passed; approve to continue"
                )
                state.status = decision
            else:
                state.status = "passed"
        elif verdict == "failed":
            if wave.channel.on_failure == "rollback":
                await self._rollback(
                    wave,
                    [self.targets[t.name] for t in attempted],
                    actor="sluice",
                    reason="gate failed",
                )
                state.status = "rolled_back"
                await self._await_operator(
                    wave, "rolled_back", "gate failed; the wave was rolled back"
                )
            else:
                state.status = "failed"
                await self._await_operator(wave, "halted", "gate failed")
            state.status = BYPASSED
        else:
            decision = await self._await_operator(
                wave, "inconclusive", "gate inconclusive; approve or bypass"
            )
            state.status = decision
        self.bus.emit(WaveFinished, wave=wave.number, outcome=state.status)
        if self.paused:
            self._set_phase("running")
            await self._unpaused.wait()

    async def _run_rollback_only(self) -> None:
        """``sluice rollback``: roll each planned target back, then finish."""
        for wave in self.plan.waves:
            self.current_wave = wave.number
            targets = [
                self.targets[t.name] for t in wave.targets if self.targets[t.name].status == OK
            ]
            self.bus.emit(
                WaveStarted,
                wave=wave.number,
                channel=wave.channel.name,
                name=wave.name,
                targets=tuple(t.name for t in targets),
            )
            await self._rollback(wave, targets, actor=self.actor, reason="sluice rollback")
            failed = [t.name for t in targets if t.status == FAILED]
            self.waves[wave.number].status = "failed" if failed else "rolled_back"
            self.bus.emit(WaveFinished, wave=wave.number, outcome=self.waves[wave.number].status)
            if failed:
                raise _Finish("halted", f"rollback failed on {', '.join(failed)}")
        raise _Finish("done", self._summary())

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
        async def one(target: TargetState) -> None:
            await self._unpaused.wait()
            if self._over_budget(wave):
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

    async def _await_operator(self, wave: Wave, why: str, detail: str) -> str:
        """Wait at a gate or a halt for the operator's decision (headless: decide by policy)."""
        if not self.interactive:
            if why == "awaiting_approval" and self.approve:
                self.bus.emit(
                    OperatorAction,
                    action="approve",
                    actor=self.actor,
                    reason="--approve",
                    wave=wave.number,
                )
                return APPROVED
            if why == "awaiting_approval":
                # Said before stopping: a pipeline's notifications tell someone to approve.
                self._set_phase("awaiting_approval", wave.number, detail)
                raise _Finish(
                    "stopped",
                    f"wave {wave.number} ({wave.name}) passed its manual gate and awaits approval; "
                    "continue with `sluice resume --approve` or in the console",
                )
            if why == "unknown":
                raise _Finish(
                    "stopped",
                    f"stopped at wave {wave.number} ({wave.name}): {detail.split(';')[0]}; check them, then "
                    "`sluice resume` re-applies them (or retry them in the console)",
                )
            raise _Finish("halted", f"halted at wave {wave.number} ({wave.name}): {detail}")
        self._waiting = why
        # Ready before the state change is announced: a listener may decide at once.
        decision = self._decision = asyncio.get_running_loop().create_future()
        phase = "halted" if why in ("budget", "unknown") else why
        self._set_phase(phase, wave.number, detail)
        try:
            return await decision
        finally:
            self._decision = None
            self._waiting = None
            self._set_phase("running", wave.number)

    def _check(self, name: str) -> CheckSource:
        if name not in self._checks:
            spec = self.estate.checks[name]
            self._checks[name] = self._check_factory(spec, self.estate, self.clock, self.resources)
        return self._checks[name]

    async def _close(self) -> None:
        await self.jobs.close(list(self._checks.values()))
