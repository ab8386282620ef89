"""The operator's side of a rollout: its live state and the commands that change it.

:class:`RolloutControls` holds what a running rollout is (targets, waves, phase, the decision a
gate waits for) and takes the operator commands — ``pause``, ``resume``, ``advance``, ``abort``,
``bypass`` — as plain methods, safe to call at any moment: a command that makes no sense now
returns a refusal saying why, never raises. Each accepted command is emitted as an
``OperatorAction`` with its actor and reason. :mod:`sluice.engine.rollout.target_commands` adds
``retry``, ``rollback_wave`` and ``rollback_target``, :mod:`sluice.engine.rollout.governance`
freezes, windows and approvals, and :class:`sluice.engine.rollout.orchestrator.Rollout` the
driving: waves, soaks and gates.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from sluice.engine.checks.base import CheckSource, create_check
from sluice.engine.executors.base import Executor, create_executor
from sluice.engine.executors.spool import SpoolDir, rollout_spool_dir
from sluice.engine.model.estate import Estate
from sluice.engine.model.plan import Plan, Wave
from sluice.engine.rollout.events import EventBus, OperatorAction, StateChanged
from sluice.engine.rollout.jobs import JobRunner, current_user
from sluice.engine.rollout.options import ResumeState, RolloutOptions
from sluice.engine.rollout.state import (
    ABORTED,
    APPLYING,
    FAILED,
    NOOP,
    OK,
    PENDING,
    ROLLED_BACK,
    ROLLING_BACK,
    UNKNOWN,
    CommandResult,
    Outcome,
    RolloutOutcome,
    plan_states,
)
from sluice.engine.support.clock import Clock
from sluice.engine.support.resources import Resources

#: Operator decisions that end a wait at a gate.
APPROVED, BYPASSED = "approved", "bypassed"


class RolloutControls:
    """A rollout's live state and its operator commands (see :class:`sluice.engine.rollout.orchestrator.Rollout`).

    Args:
        options: what the operator asked for (default: interactive, as the console runs).
        resume: what history recorded of this rollout before a restart (``None``: a new one).
        executor_factory, check_factory: build executors and check sources from their specs
            (tests substitute their own).
    """

    def __init__(
        self,
        estate: Estate,
        plan: Plan,
        *,
        rollout_id: int = 1,
        bus: EventBus | None = None,
        clock: Clock | None = None,
        actor: str | None = None,
        options: RolloutOptions | None = None,
        resume: ResumeState | None = None,
        executor_factory: Callable[..., Executor] = create_executor,
        check_factory: Callable[..., CheckSource] = create_check,
    ):
        self.estate = estate
        self.plan = plan
        self.rollout_id = rollout_id
        self.bus = bus or EventBus()
        self.clock = clock or Clock()
        self.actor = actor or current_user()
        self.options = options or RolloutOptions()
        self.resumed = resume is not None
        restored = resume or ResumeState()
        self.start_wave = restored.start_wave
        self.recorded_baselines = restored.baselines
        #: waves whose entry approval was given (before a restart, or in this run)
        self.entered = restored.entered
        #: Targets whose last apply sluice stopped itself: re-applied on resume, never adopted.
        self.stopped_before = restored.stopped
        #: the plan review a ``review = "plans"`` wave waits for (rollout/review.py), if any
        self.review: Any = None
        self.resources = Resources()
        self.jobs = JobRunner(
            estate,
            plan.module,
            self.bus,
            self.clock,
            self.resources,
            executor_factory,
            SpoolDir(rollout_spool_dir(estate, rollout_id)),
        )
        self._check_factory = check_factory
        self._checks: dict[str, CheckSource] = {}
        self.targets, self.waves = plan_states(plan, self._prior(restored))
        self._tallies: dict[int, Counter[str]] = {number: Counter() for number in self.waves}
        for target in self.targets.values():
            target.track(self._tallies[target.wave])
        #: Called with an exception that escaped the engine; returns where its traceback went
        #: (the session writes it to a log file beside the history).
        self.on_crash: Callable[[BaseException], str | None] | None = None
        self._start_idle()

    def _prior(self, restored: ResumeState) -> Mapping[str, tuple[str, str]]:
        """Each target's recorded (status, version) to start from."""
        if self.options.rollback_only:  # what it rolls back was applied: it runs ``to_version``
            return {t.name: (OK, t.to_version) for t in self.plan.targets if not t.noop}
        return restored.prior

    def _start_idle(self) -> None:
        """Where a rollout is before ``run()``: idle, not paused, no gate, nothing stopping."""
        self.state = "idle"
        self.current_wave: int | None = None
        self.paused = False
        self.outcome: Outcome | None = None
        self._phase = "running"
        self._unpaused = asyncio.Event()
        self._unpaused.set()
        self.soak_ended = asyncio.Event()
        self.soak_bypassed = False
        self._decision: asyncio.Future[str] | None = None
        self._waiting: str | None = None  # awaiting_approval | inconclusive | halted | budget
        self._task: asyncio.Task[Outcome] | None = None
        self._aborting: tuple[str, str] | None = None
        self._abort_outcome = RolloutOutcome.ABORTED  # or HISTORY_FAILED (stop_unrecorded)
        #: what replaces this rollout when it is aborted for a new one (``abort(superseded_by=)``)
        self.superseded_by: str | None = None
        self._side_tasks: set[asyncio.Task[Any]] = set()
        self._applying: int | None = None  # the wave whose applies are running

    # ------------------------------------------------------------------ commands

    def pause(self, reason: str = "", actor: str | None = None) -> CommandResult:
        """No new applies start and no automatic advance; in-flight applies and soaks go on."""
        if not self._active():
            return CommandResult(False, "no rollout is running")
        if self.paused:
            return CommandResult(False, "already paused")
        self.paused = True
        self._unpaused.clear()
        self._operator("pause", actor, reason)
        self._set_state(self._visible_state(), self.current_wave)
        return CommandResult(True, "paused: in-flight applies finish, no new ones start")

    def resume(self, reason: str = "", actor: str | None = None) -> CommandResult:
        if not self._active():
            return CommandResult(False, "no rollout is running")
        if not self.paused:
            return CommandResult(False, "not paused")
        self.paused = False
        self._unpaused.set()
        self._operator("resume", actor, reason)
        self._set_state(self._visible_state(), self.current_wave)
        return CommandResult(True, "resumed")

    def advance(self, reason: str = "", actor: str | None = None) -> CommandResult:
        """Approve a waiting gate, or end the current soak early."""
        if not self._active():
            return CommandResult(False, "no rollout is running")
        if self._waiting == "review_plans" and self._decision and self.review is not None:
            # Recorded with the hashes of exactly the plan files the applies will use.
            self._operator("approve_plans", actor, self.review.hashes(), wave=self.current_wave)
            self._decide(APPROVED)
            return CommandResult(True, f"wave {self.current_wave}: plans approved")
        if self._waiting in ("awaiting_approval", "inconclusive") and self._decision:
            action = "approve" if self._waiting == "awaiting_approval" else "advance"
            self._operator(action, actor, reason, wave=self.current_wave)
            self._decide(APPROVED)
            return CommandResult(True, f"wave {self.current_wave} approved")
        if self._waiting == "budget" and self._decision:
            wave = self.plan.waves[(self.current_wave or 1) - 1]
            if self._over_budget(wave):
                return CommandResult(
                    False,
                    f"{self._budget_text(wave)}: retry failed targets, bypass (with a reason) or abort",
                )
            self._operator("advance", actor, reason, wave=self.current_wave)
            self._decide(APPROVED)
            return CommandResult(True, "failures are within budget now; continuing")
        if self._waiting == "unknown" and self._decision:
            wave = self.plan.waves[(self.current_wave or 1) - 1]
            left = [t.name for t in wave.targets if self.targets[t.name].status == UNKNOWN]
            if left:
                return CommandResult(
                    False,
                    f"outcome still unknown on {', '.join(left)}: retry them or bypass (with a reason)",
                )
            self._operator("advance", actor, reason, wave=self.current_wave)
            self._decide(APPROVED)
            return CommandResult(True, "no target of unknown outcome left; continuing")
        if self._waiting in ("halted", "rolled_back"):
            return CommandResult(
                False, "the gate failed: roll back, bypass (with a reason) or abort"
            )
        if self._phase == "soaking" and not self.soak_ended.is_set():
            self._operator("advance", actor, reason or "soak ended early", wave=self.current_wave)
            self.soak_ended.set()
            return CommandResult(True, "soak ended early; judging the gate on what was measured")
        return CommandResult(False, "nothing to advance: no gate is waiting and no soak is running")

    def bypass(self, reason: str, actor: str | None = None) -> CommandResult:
        """Skip the current gate (or a halt) — an explicit, reasoned emergency action."""
        if not reason or not reason.strip():
            return CommandResult(False, "bypass needs a reason")
        if not self._active():
            return CommandResult(False, "no rollout is running")
        if self.review is not None and self.review.pending():  # declines a retry's new plan
            return self._decide_retry_plan(False, actor, reason)
        if self._decision is not None:
            self._operator("bypass", actor, reason, wave=self.current_wave)
            self._decide(BYPASSED)
            return CommandResult(True, f"gate of wave {self.current_wave} bypassed")
        if self._phase == "soaking" and not self.soak_ended.is_set():
            self._operator("bypass", actor, reason, wave=self.current_wave)
            self.soak_bypassed = True
            self.soak_ended.set()
            return CommandResult(True, f"gate of wave {self.current_wave} bypassed")
        return CommandResult(False, "no gate to bypass right now")

    def _decide_retry_plan(self, approved: bool, actor: str | None, reason: str) -> CommandResult:
        """Approve (advance) or decline (bypass) a retry's new plan (rollout/review.py)."""
        wave = self.review.wave
        if approved:  # recorded with the hash of exactly the plan file the retry applies
            self._operator("approve_plans", actor, self.review.hashes(), wave=wave)
        else:
            self._operator("bypass", actor, reason, wave=wave)
        self.review.decide(approved)
        return CommandResult(True, f"the retry's new plan {'approved' if approved else 'declined'}")

    def _decide(self, decision: str) -> None:
        """End the wait at a gate; until the next wait, commands see no gate (so no double decision)."""
        assert self._decision is not None
        self._decision.set_result(decision)
        self._decision = self._waiting = None

    @property
    def aborting(self) -> bool:
        """An abort was asked for (its applies may still be stopping)."""
        return self._aborting is not None

    def abort(
        self, reason: str = "", actor: str | None = None, *, superseded_by: str | None = None
    ) -> CommandResult:
        """Cancel in-flight applies (process groups terminated) and stop the rollout.

        ``superseded_by`` (e.g. ``"postgres-operator 2.0.1"``): it is stopped because a new
        rollout replaces it; its outcome is then ``superseded``, not ``aborted``.
        """
        if not self._active() or self._task is None:
            return CommandResult(False, "no rollout is running")
        if self._aborting:
            # A second abort: applies still stopping within their grace are killed at once.
            stopping = self.jobs.escalate()
            if not stopping:
                return CommandResult(False, "already aborting")
            self._operator("abort", actor or self.actor, "again: SIGKILL at once")
            return CommandResult(True, f"stopping {stopping} apply(s) at once: SIGKILL")
        actor = actor or self.actor
        self._aborting = (actor, reason)
        self.superseded_by = superseded_by
        self._operator("abort", actor, reason)
        self._task.cancel()
        return CommandResult(True, "aborting: in-flight applies are being stopped")

    def stop_unrecorded(self, reason: str, in_flight: bool) -> None:
        """The history can no longer be written: no apply starts from now on, and the rollout
        ends (outcome ``history_failed``) once no apply is ``in_flight`` — the driver calls this
        again as each ends. Not an operator command: nothing records it."""
        self.jobs.refusal = reason
        self.paused = True
        self._unpaused.clear()
        if in_flight:
            return
        if self._active() and self._task is not None and self._aborting is None:
            self._aborting = ("sluice", reason)
            self._abort_outcome = RolloutOutcome.HISTORY_FAILED
            self._task.cancel()

    # ------------------------------------------------------------------ helpers

    def _active(self) -> bool:
        return self._task is not None and self.outcome is None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _cancel_side_tasks(self) -> None:
        for task in list(self._side_tasks):
            task.cancel()
        if self._side_tasks:
            await asyncio.gather(*self._side_tasks, return_exceptions=True)

    def _operator(
        self,
        action: str,
        actor: str | None,
        reason: str,
        *,
        wave: int | None = None,
        target: str | None = None,
    ) -> None:
        self.bus.emit(
            OperatorAction,
            action=action,
            actor=actor or self.actor,
            reason=reason,
            wave=wave,
            target=target,
        )

    def _visible_state(self) -> str:
        return "paused" if self.paused and self._phase in ("running", "soaking") else self._phase

    def _set_phase(self, phase: str, wave: int | None = None, detail: str = "") -> None:
        self._phase = phase
        self._set_state(
            self._visible_state(), wave if wave is not None else self.current_wave, detail
        )

    def _set_state(self, state: str, wave: int | None = None, detail: str = "") -> None:
        if state == self.state and not detail:
            return
        self.state = state
        self.bus.emit(StateChanged, state=state, wave=wave, detail=detail)

    def _counts(self, wave: Wave) -> dict[str, int]:
        counts: dict[str, int] = dict.fromkeys(
            (OK, FAILED, PENDING, APPLYING, NOOP, ROLLED_BACK, UNKNOWN, ABORTED, ROLLING_BACK), 0
        )
        counts.update(self._tallies[wave.number])  # kept current by TargetState.track: O(1)
        return counts

    def _over_budget(self, wave: Wave) -> bool:
        return self._counts(wave)[FAILED] > wave.failure_budget

    def _budget_text(self, wave: Wave) -> str:
        failed = self._counts(wave)[FAILED]
        # "0 failed, 2 tolerated" read as if two failures were tolerated: say it is the budget.
        text = f"{failed} failed (budget {wave.failure_budget})"
        return text + (" — failure budget exceeded" if failed > wave.failure_budget else "")

    def _summary(self) -> str:
        statuses = [t.status for t in self.targets.values()]
        return (
            f"{statuses.count(OK)} applied, {statuses.count(NOOP)} no-op, {statuses.count(FAILED)} failed, "
            f"{statuses.count(ROLLED_BACK)} rolled back across {len(self.plan.waves)} waves"
        )
