"""The operator's commands on targets — retry a failed one, roll back a wave or one target — and
the rollback itself, which the orchestrator also runs when a gate fails with
``on_failure = "rollback"`` and ``sluice rollback`` runs alone.

Like every command in :mod:`sluice.engine.rollout.controls`, each returns a refusal saying why
when it makes no sense now; an accepted one runs beside the rollout as a side task.
"""

from __future__ import annotations

from typing import Any

from sluice.engine.model.plan import Wave
from sluice.engine.rollout.controls import RolloutControls
from sluice.engine.rollout.events import WaveFinished, WaveStarted
from sluice.engine.rollout.jobs import run_bounded
from sluice.engine.rollout.state import (
    ABORTED,
    FAILED,
    NOOP,
    OK,
    PENDING,
    ROLLED_BACK,
    UNKNOWN,
    CommandResult,
    Finish,
    RolloutOutcome,
    TargetState,
)


class TargetCommands(RolloutControls):
    """Adds retries and rollbacks to the controls."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._rollbacks = 0  # in flight; the phase before the first comes back after the last
        self._phase_before_rollback = "running"

    def retry(self, target: str, reason: str = "", actor: str | None = None) -> CommandResult:
        """Apply a failed target again."""
        state = self.targets.get(target)
        if state is None:
            return CommandResult(False, f"unknown target {target!r}")
        if not self._active():
            return CommandResult(False, "no rollout is running")
        if state.status not in (FAILED, UNKNOWN, ABORTED):
            return CommandResult(False, f"{target} is {state.status}, not failed")
        if state.wave > (self.current_wave or 0):
            return CommandResult(False, f"{target}'s wave has not started")
        if state.wave == self._applying:  # a retry now would exceed the wave's max_parallel
            return CommandResult(
                False, f"wave {state.wave} is still applying; retry {target} when its applies end"
            )
        self._operator("retry", actor, reason, wave=state.wave, target=target)
        self._spawn(self._retry(state))
        return CommandResult(True, f"retrying {target}")

    async def _retry(self, state: TargetState) -> None:
        if not await self._before_retry(state):  # the rollout's plan review, if due
            return
        await self.jobs.run(state.wave, state, "retry")
        if state.status == FAILED:
            return
        wave = self.plan.waves[state.wave - 1]
        if self._waiting == "budget" and not self._over_budget(wave):
            self._set_phase(
                "halted", wave.number, "failures are within budget now: press advance to continue"
            )

    async def _before_retry(self, state: TargetState) -> bool:
        """Whether the retry may apply (the orchestrator reviews its plan first where due)."""
        return True

    def rollback_wave(
        self, number: int, reason: str = "", actor: str | None = None
    ) -> CommandResult:
        """Re-apply each target's previous version in wave ``number``."""
        if number not in self.waves:
            return CommandResult(False, f"there is no wave {number}")
        if not self._active():
            return CommandResult(False, "no rollout is running")
        if self.waves[number].status in ("pending", "applying") or self._phase == "rolling_back":
            return CommandResult(
                False,
                f"wave {number} is {self.waves[number].status}; wait for its applies to finish",
            )
        targets = [self.targets[n] for n in self.waves[number].targets]
        todo = [t for t in targets if t.status in (OK, FAILED, UNKNOWN, ABORTED)]
        if not todo:
            return CommandResult(False, f"nothing to roll back in wave {number}")
        self._operator("rollback", actor, reason, wave=number)
        self._spawn(self._rollback_then_halt(number, todo, actor or self.actor, reason))
        return CommandResult(True, f"rolling back wave {number} ({len(todo)} targets)")

    def rollback_target(
        self, target: str, reason: str = "", actor: str | None = None
    ) -> CommandResult:
        state = self.targets.get(target)
        if state is None:
            return CommandResult(False, f"unknown target {target!r}")
        if not self._active():
            return CommandResult(False, "no rollout is running")
        if state.status not in (OK, FAILED, UNKNOWN, ABORTED):
            return CommandResult(False, f"{target} is {state.status}: nothing to roll back")
        self._operator("rollback", actor, reason, wave=state.wave, target=target)
        self._spawn(self._rollback_then_halt(state.wave, [state], actor or self.actor, reason))
        return CommandResult(True, f"rolling back {target} to {state.from_version}")

    async def _rollback_then_halt(
        self, number: int, targets: list[TargetState], actor: str, reason: str
    ) -> None:
        wave = self.plan.waves[number - 1]
        await self._rollback(wave, targets, actor=actor, reason=reason)
        if all(
            self.targets[n].status in (ROLLED_BACK, NOOP, PENDING)
            for n in self.waves[number].targets
        ):
            self.waves[number].status = "rolled_back"
            self.bus.emit(WaveFinished, wave=number, outcome="rolled_back")

    async def _rollback(
        self, wave: Wave, targets: list[TargetState], *, actor: str, reason: str
    ) -> None:
        if not self._rollbacks:
            self._phase_before_rollback = self._phase
        self._rollbacks += 1
        self._set_phase("rolling_back", wave.number, reason)

        async def one(target: TargetState) -> None:
            await self.jobs.run(wave.number, target, "rollback")

        todo = [
            t
            for t in targets
            if t.version != t.from_version or t.status in (FAILED, UNKNOWN, ABORTED)
        ]
        try:
            await run_bounded(todo, wave.channel.max_parallel, one)
        finally:
            self._rollbacks -= 1
        # Back to where it was, unless the rollout moved on meanwhile (an approval during an
        # operator's rollback) or another rollback still runs.
        if not self._rollbacks and self._phase == "rolling_back":
            self._set_phase(self._phase_before_rollback, wave.number)

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
                raise Finish(RolloutOutcome.HALTED, f"rollback failed on {', '.join(failed)}")
        raise Finish(RolloutOutcome.DONE, self._summary())
