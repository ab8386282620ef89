"""The rollout orchestrator: waves in order, bounded concurrent applies, soaks, gates, commands.

A :class:`Rollout` drives one plan. It publishes everything it does on an :class:`EventBus` (the
one stream the console, the headless printer and history read) and takes operator commands —
``pause``, ``resume``, ``advance``, ``abort``, ``retry``, ``rollback_wave``, ``rollback_target``,
``bypass`` — as plain methods, safe to call at any moment: a command that makes no sense now
returns a refusal saying why, never raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from engine.checks.base import CheckSource, create_check
from engine.clock import Clock
from engine.estate import Estate
from engine.events import (
    ApplyFinished,
    ApplyOutput,
    ApplyStarted,
    EventBus,
    Notice,
    OperatorAction,
    RolloutFinished,
    RolloutStarted,
    StateChanged,
    WaveApplied,
    WaveFinished,
    WaveStarted,
)
from engine.executors.base import ApplyResult, Executor, Job, create_executor
from engine.plan import Plan, Wave
from engine.resources import Resources
from engine.soak import run_soak
from engine.state import (
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
    TargetState,
    WaveState,
)
from engine.template import placeholders, redact

#: Operator decisions that end a wait at a gate.
APPROVED, BYPASSED = "approved", "bypassed"


class _Finish(Exception):
    def __init__(self, outcome: str, summary: str):
        self.outcome = Outcome(outcome, summary)


async def _bounded(
    targets: list[TargetState], limit: int, job: Callable[[TargetState], Awaitable[None]]
) -> None:
    """Run ``job`` for every target, at most ``limit`` at once; a freed slot starts the next at once.

    A pool of ``limit`` workers pulling from one iterator rather than a task per target queued on
    an ``asyncio.Semaphore``: the semaphore rescans its already-woken waiters on every release,
    which is O(n²) across a large wave (a fifth of a 10,000-target rollout's time). A TaskGroup,
    not ``gather``: cancelled (abort), it waits until every in-flight job has finished stopping
    its processes, where ``gather`` returns as soon as the first one has.
    """
    pending = iter(targets)

    async def worker() -> None:
        for target in pending:
            await job(target)

    async with asyncio.TaskGroup() as group:
        for _ in range(min(limit, len(targets))):
            group.create_task(worker())


def current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


class Rollout:
    """Drives ``plan`` across ``estate``.

    Args:
        interactive: wait for the operator at gates (the console). Headless runs stop instead:
            a manual gate with ``approve`` is approved; without it the rollout stops (exit 4);
            a failed or inconclusive gate or a spent budget halts it (exit 1).
        until_wave: stop (resumable, exit 4) after this wave.
        prior: for resume — target name → (status, version) already recorded.
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
        interactive: bool = True,
        approve: bool = False,
        until_wave: int | None = None,
        start_wave: int = 1,
        prior: Mapping[str, tuple[str, str]] | None = None,
        resumed: bool = False,
        reapply_unknown: bool = True,
        rollback_only: bool = False,
        executor_factory: Callable[..., Executor] = create_executor,
        check_factory: Callable[..., CheckSource] = create_check,
    ):
        self.estate = estate
        self.plan = plan
        self.rollout_id = rollout_id
        self.bus = bus or EventBus()
        self.clock = clock or Clock()
        self.actor = actor or current_user()
        self.interactive = interactive
        self.approve = approve
        self.until_wave = until_wave
        self.start_wave = start_wave
        self.resumed = resumed
        self.reapply_unknown = reapply_unknown
        self.rollback_only = rollback_only
        self.resources = Resources()
        self._executor_factory = executor_factory
        self._check_factory = check_factory
        self._executors: dict[str, Executor] = {}
        self._checks: dict[str, CheckSource] = {}
        self.targets: dict[str, TargetState] = {}
        self.waves: dict[int, WaveState] = {}
        for wave in plan.waves:
            self.waves[wave.number] = WaveState(
                wave.number,
                wave.name,
                wave.channel.name,
                [t.name for t in wave.targets],
                wave.failure_budget,
            )
            for t in wave.targets:
                self.targets[t.name] = TargetState(
                    t.name, wave.number, t.channel, t.executor, t.from_version, t.to_version
                )
        for name, (status, version) in (prior or {}).items():
            if name in self.targets:
                self.targets[name].status, self.targets[name].version = status, version
        self._tallies: dict[int, Counter[str]] = {number: Counter() for number in self.waves}
        for target in self.targets.values():
            target.track(self._tallies[target.wave])
        self.state = "idle"
        self.current_wave: int | None = None
        self.paused = False
        self.outcome: Outcome | None = None
        self._phase = "running"
        self._unpaused = asyncio.Event()
        self._unpaused.set()
        self._end_soak = asyncio.Event()
        self._bypass_soak = False
        self._decision: asyncio.Future[str] | None = None
        self._waiting: str | None = None  # awaiting_approval | inconclusive | halted | budget
        self._task: asyncio.Task[Outcome] | None = None
        self._aborting: tuple[str, str] | None = None
        self._side_tasks: set[asyncio.Task[Any]] = set()
        self._rollbacks = 0  # in flight; the phase before the first comes back after the last
        self._applying: int | None = None  # the wave whose applies are running
        self._phase_before_rollback = "running"
        self._secrets = self._collect_secrets()

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
        self._end_soak.clear()
        self._bypass_soak = False
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
        from engine.soak import take_baselines

        return await take_baselines(self, wave, checks, sources, targets)

    async def _apply_wave(self, wave: Wave, todo: list[TargetState]) -> None:
        async def one(target: TargetState) -> None:
            await self._unpaused.wait()
            if self._over_budget(wave):
                return
            await self._run_job(wave.number, target, "apply")

        self._applying = wave.number
        try:
            await _bounded(todo, wave.channel.max_parallel, one)
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

    async def _run_job(self, wave: int, target: TargetState, action: str) -> bool:
        """Run one apply or rollback of ``target``; record it before and after."""
        rollback = action == "rollback"
        version = target.from_version if rollback else target.to_version
        previous = target.version
        spec = self.estate.targets[target.name]
        job = Job(
            target=target.name,
            channel=target.channel,
            module=self.plan.module,
            version=version,
            previous_version=previous,
            action="rollback" if rollback else "apply",
            vars=spec.vars,
        )
        executor = self._executor(target.executor)
        target.status = ROLLING_BACK if rollback else APPLYING
        target.attempts += 1
        # Recorded (durably, by the history listener) before the executor launches anything.
        self.bus.emit(
            ApplyStarted,
            wave=wave,
            target=target.name,
            version=version,
            from_version=previous,
            action=action,
            command=executor.describe(job),
        )

        def sink(stream: str, line: str) -> None:
            self.bus.emit(
                ApplyOutput, target=target.name, stream=stream, line=redact(line, self._secrets)
            )

        started = time.monotonic()
        try:
            result = await executor.apply(job, sink)
        except asyncio.CancelledError:
            target.status, target.reason = ABORTED, "aborted"
            self.bus.emit(
                ApplyFinished,
                wave=wave,
                target=target.name,
                version=version,
                from_version=previous,
                action=action,
                outcome="aborted",
                reason="aborted",
                duration=time.monotonic() - started,
            )
            raise
        except Exception as exc:  # an executor bug must fail the target, not the rollout
            result = ApplyResult(False, f"executor error: {type(exc).__name__}: {exc}")
        target.duration = time.monotonic() - started
        target.reason = redact(result.reason, self._secrets)
        if result.ok:
            target.status = ROLLED_BACK if rollback else OK
            target.version = version
        else:
            target.status = FAILED
            if rollback:
                target.reason = f"rollback failed: {target.reason}"
        self.bus.emit(
            ApplyFinished,
            wave=wave,
            target=target.name,
            version=version,
            from_version=previous,
            action=action,
            outcome="ok" if result.ok else "failed",
            reason=target.reason,
            duration=target.duration,
        )
        return result.ok

    async def _rollback(
        self, wave: Wave, targets: list[TargetState], *, actor: str, reason: str
    ) -> None:
        if not self._rollbacks:
            self._phase_before_rollback = self._phase
        self._rollbacks += 1
        self._set_phase("rolling_back", wave.number, reason)

        async def one(target: TargetState) -> None:
            await self._run_job(wave.number, target, "rollback")

        todo = [
            t
            for t in targets
            if t.version != t.from_version or t.status in (FAILED, UNKNOWN, ABORTED)
        ]
        try:
            await _bounded(todo, wave.channel.max_parallel, one)
        finally:
            self._rollbacks -= 1
        # Back to where it was, unless the rollout moved on meanwhile (an approval during an
        # operator's rollback) or another rollback still runs.
        if not self._rollbacks and self._phase == "rolling_back":
            self._set_phase(self._phase_before_rollback, wave.number)

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
        if self._phase == "soaking" and not self._end_soak.is_set():
            self._operator("advance", actor, reason or "soak ended early", wave=self.current_wave)
            self._end_soak.set()
            return CommandResult(True, "soak ended early; judging the gate on what was measured")
        return CommandResult(False, "nothing to advance: no gate is waiting and no soak is running")

    def bypass(self, reason: str, actor: str | None = None) -> CommandResult:
        """Skip the current gate (or a halt) — an explicit, reasoned emergency action."""
        if not reason or not reason.strip():
            return CommandResult(False, "bypass needs a reason")
        if not self._active():
            return CommandResult(False, "no rollout is running")
        if self._decision is not None:
            self._operator("bypass", actor, reason, wave=self.current_wave)
            self._decide(BYPASSED)
            return CommandResult(True, f"gate of wave {self.current_wave} bypassed")
        if self._phase == "soaking" and not self._end_soak.is_set():
            self._operator("bypass", actor, reason, wave=self.current_wave)
            self._bypass_soak = True
            self._end_soak.set()
            return CommandResult(True, f"gate of wave {self.current_wave} bypassed")
        return CommandResult(False, "no gate to bypass right now")

    def _decide(self, decision: str) -> None:
        """End the wait at a gate; until the next wait, commands see no gate (so no double decision)."""
        assert self._decision is not None
        self._decision.set_result(decision)
        self._decision = self._waiting = None

    def abort(self, reason: str = "", actor: str | None = None) -> CommandResult:
        """Cancel in-flight applies (process groups terminated) and stop the rollout."""
        if not self._active() or self._task is None:
            return CommandResult(False, "no rollout is running")
        if self._aborting:
            return CommandResult(False, "already aborting")
        actor = actor or self.actor
        self._aborting = (actor, reason)
        self._operator("abort", actor, reason)
        self._task.cancel()
        return CommandResult(True, "aborting: in-flight applies are being stopped")

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
        await self._run_job(state.wave, state, "retry")
        if state.status == FAILED:
            return
        wave = self.plan.waves[state.wave - 1]
        if self._waiting == "budget" and not self._over_budget(wave):
            self._set_phase(
                "halted", wave.number, "failures are within budget now: press advance to continue"
            )

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
        counts = dict.fromkeys(
            (OK, FAILED, PENDING, APPLYING, NOOP, ROLLED_BACK, UNKNOWN, ABORTED, ROLLING_BACK), 0
        )
        counts.update(self._tallies[wave.number])  # kept current by TargetState.track: O(1)
        return counts

    def _over_budget(self, wave: Wave) -> bool:
        return self._counts(wave)[FAILED] > wave.failure_budget

    def _budget_text(self, wave: Wave) -> str:
        failed = self._counts(wave)[FAILED]
        text = f"{failed} failed, {wave.failure_budget} tolerated"
        return text + (" — failure budget exceeded" if failed > wave.failure_budget else "")

    def _summary(self) -> str:
        statuses = [t.status for t in self.targets.values()]
        return (
            f"{statuses.count(OK)} applied, {statuses.count(NOOP)} no-op, {statuses.count(FAILED)} failed, "
            f"{statuses.count(ROLLED_BACK)} rolled back across {len(self.plan.waves)} waves"
        )

    def _executor(self, name: str) -> Executor:
        if name not in self._executors:
            spec = self.estate.executors[name]
            self._executors[name] = self._executor_factory(
                spec, self.estate, self.clock, self.resources
            )
        return self._executors[name]

    def _check(self, name: str) -> CheckSource:
        if name not in self._checks:
            spec = self.estate.checks[name]
            self._checks[name] = self._check_factory(spec, self.estate, self.clock, self.resources)
        return self._checks[name]

    async def _close(self) -> None:
        closeables: list[Executor | CheckSource] = [
            *self._executors.values(),
            *self._checks.values(),
        ]
        for closeable in closeables:
            with contextlib.suppress(Exception):  # closing must never mask the outcome
                await closeable.close()
        await self.resources.close()

    def _collect_secrets(self) -> list[str]:
        """Values of every ``{env.X}`` the estate mentions, to mask in output and reasons."""
        import os

        names: set[str] = set()
        for settings in [
            *(e.settings for e in self.estate.executors.values()),
            *(c.settings for c in self.estate.checks.values()),
        ]:
            for value in settings.values():
                texts = (
                    [value]
                    if isinstance(value, str)
                    else [v for v in value.values() if isinstance(v, str)]
                    if isinstance(value, dict)
                    else []
                )
                for text in texts:
                    names.update(n[4:] for n in placeholders(text) if n.startswith("env."))
        return [os.environ[n] for n in sorted(names) if os.environ.get(n)]
