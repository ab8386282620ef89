"""Applies and rollbacks of single targets: executors, bounded pools, masking, the apply events.

The :class:`JobRunner` is the rollout's hands. It builds each executor once, runs one target's
apply or rollback through it with the events history depends on (``ApplyStarted`` is emitted —
and recorded durably by the history listener, awaited through :attr:`JobRunner.recorded` where the
history commits a wave's starts together — before the executor launches anything), masks
secrets in output and reasons, and closes everything it opened when the rollout ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import getpass
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from sluice.engine.executors.base import ApplyResult, Executor, Job, create_executor
from sluice.engine.executors.spool import SpoolDir
from sluice.engine.model.estate import Estate
from sluice.engine.model.template import placeholders, redact
from sluice.engine.rollout.events import (
    ApplyAdopted,
    ApplyFinished,
    ApplyOutput,
    ApplyStarted,
    EventBus,
)
from sluice.engine.rollout.output_cap import OutputCap
from sluice.engine.rollout.state import (
    ABORTED,
    APPLYING,
    FAILED,
    OK,
    ROLLED_BACK,
    ROLLING_BACK,
    UNKNOWN,
    StopDriving,
    TargetState,
)
from sluice.engine.rollout.stopping import Stops
from sluice.engine.support.clock import Clock
from sluice.engine.support.resources import Resources

if TYPE_CHECKING:
    from sluice.engine.checks.base import CheckSource


def current_user() -> str:
    """The OS user, the actor of operator commands (``unknown`` where there is no passwd entry)."""
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


async def run_bounded(
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


class JobRunner:
    """Runs targets' applies and rollbacks for one rollout of ``module``.

    Args:
        executor_factory: builds an executor from its spec (tests substitute their own).
    """

    def __init__(
        self,
        estate: Estate,
        module: str,
        bus: EventBus,
        clock: Clock,
        resources: Resources,
        executor_factory: Callable[..., Executor] = create_executor,
        spools: SpoolDir | None = None,
    ):
        self.estate = estate
        self.spools = spools
        self._running: set[asyncio.Task[Any]] = set()
        self.module = module
        self.bus = bus
        self.clock = clock
        self.resources = resources
        self._executor_factory = executor_factory
        self._executors: dict[str, Executor] = {}
        self.secrets = collect_secrets(estate)
        #: Set when no apply may start any more (the history can no longer record one): why.
        self.refusal: str | None = None
        #: Asked by the executor right before an apply starts (``Job.may_launch``): raises
        #: StopDriving when this process may no longer act (the session sets it).
        self.launch_guard: Callable[[], None] | None = None
        #: Called after an apply's start (True) or finish (False) is emitted: what to await until
        #: the history holds it durably — whether it does (None: it already does). Raises
        #: StopDriving after a start this process may no longer launch (the session sets it:
        #: ``Recorder.recorded``).
        self.recorded: Callable[[bool], Awaitable[bool] | None] | None = None
        #: The applies being stopped now (abort, timeout), for the console's countdown.
        self.stops = Stops()

    def executor(self, name: str) -> Executor:
        """The rollout's one executor named ``name`` (built on first use)."""
        if name not in self._executors:
            spec = self.estate.executors[name]
            self._executors[name] = self._executor_factory(
                spec, self.estate, self.clock, self.resources
            )
        return self._executors[name]

    def mask(self, text: str) -> str:
        return redact(text, self.secrets)

    async def run(self, wave: int, target: TargetState, action: str) -> bool:
        """Run one apply (``action`` apply or retry) or rollback of ``target``; True if it worked.

        The target's state follows: applying → ok / failed, rolling_back → rolled_back / failed;
        cancelled (abort), it is ``aborted`` and the cancellation goes on.
        """
        rollback = action == "rollback"
        version = target.from_version if rollback else target.to_version
        previous = target.version
        job = Job(
            target=target.name,
            channel=target.channel,
            module=self.module,
            version=version,
            previous_version=previous,
            action="rollback" if rollback else "apply",
            vars=self.estate.targets[target.name].vars,
            after_unknown=target.status == UNKNOWN,
            on_stop=self.stops.noter(target.name),
            may_launch=self.launch_guard,
        )
        executor = self.executor(target.executor)
        status_before = target.status
        target.status = ROLLING_BACK if rollback else APPLYING
        target.attempts += 1
        common = {
            "wave": wave,
            "target": target.name,
            "version": version,
            "from_version": previous,
            "action": action,
        }
        unspooled = ""
        if self.spools is not None and getattr(executor, "spools", False):
            # Claimed before the start is recorded: a recorded start always has its spool.
            try:
                spool = self.spools.claim(target.name, {**common, "started": time.time()})
                job = dataclasses.replace(job, spool=spool.base)
            except OSError as exc:
                unspooled = f"cannot create its spool in {self.spools.path}: {exc.strerror}"
        # Recorded (durably, by the history listener) before the executor launches anything.
        self.bus.emit(ApplyStarted, **common, command=executor.describe(job))
        if not await self._launchable(target, common, status_before):
            return False

        sink = self._sink(target, job)
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            work = _refused(unspooled) if unspooled else executor.apply(job, sink)
            return await self._finish(target, common, work, sink)
        finally:
            self._running.discard(task)  # type: ignore[arg-type]
            self.stops.ended(target.name)

    def escalate(self) -> int:
        """Cancel again every apply already cancelled and still stopping (a second abort): an
        executor waiting out its ``stop_grace`` then kills at once. The number of them."""
        stopping = [t for t in self._running if not t.done() and t.cancelling()]
        for task in stopping:
            task.cancel()
        return len(stopping)

    def _sink(self, target: TargetState, job: Job) -> OutputCap:
        def emit(stream: str, line: str) -> None:
            self.bus.emit(ApplyOutput, target=target.name, stream=stream, line=self.mask(line))

        where = f"{job.spool}.log / .err" if job.spool else "not spooled"
        return OutputCap(emit, where)

    async def _finish(
        self,
        target: TargetState,
        common: dict[str, Any],
        work: Awaitable[ApplyResult | None],
        sink: OutputCap | None = None,
        adopted: str = "",
    ) -> bool:
        rollback = common["action"] == "rollback"
        started = self.clock.monotonic()
        try:
            result = await work
        except asyncio.CancelledError:
            if sink is not None:
                sink.finish()
            target.status, target.reason = ABORTED, "aborted"
            duration = self.clock.monotonic() - started
            self.bus.emit(
                ApplyFinished, **common, outcome="aborted", reason="aborted", duration=duration
            )
            raise
        except StopDriving:  # lost the lease before it launched: not this target's failure
            raise
        except Exception as exc:  # an executor bug must fail the target, not the rollout
            result = ApplyResult(False, f"executor error: {type(exc).__name__}: {exc}")
        if sink is not None:
            sink.finish()
        target.duration = self.clock.monotonic() - started
        if result is None:  # an adopted apply vanished without a status: still unknown
            target.status, target.reason = UNKNOWN, f"{adopted}: ended without a status"
            self.bus.emit(
                ApplyFinished, **common, outcome="unknown", reason=target.reason,
                duration=target.duration,
            )  # fmt: skip
            await self._finish_recorded()
            return False
        target.reason = self.mask(result.reason)
        if adopted:
            target.reason = f"{adopted}" + (f": {target.reason}" if target.reason else "")
        if result.ok:
            target.status = ROLLED_BACK if rollback else OK
            target.version = common["version"]
        else:
            target.status = FAILED
            if rollback:
                target.reason = f"rollback failed: {target.reason}"
        self.bus.emit(
            ApplyFinished,
            **common,
            outcome="ok" if result.ok else "failed",
            reason=target.reason,
            duration=target.duration,
        )
        await self._finish_recorded()
        return result.ok

    async def _launchable(
        self, target: TargetState, common: dict[str, Any], status_before: str
    ) -> bool:
        """After the start is emitted: wait until it is durable (the wave's starts commit
        together, at the loop's next turn); whether the apply may launch. Cancelled meanwhile (an
        abort), it never launched: aborted."""
        waiting = self.recorded(True) if self.recorded is not None else None
        recorded = False  # committed at once (or not at all) while emitted
        if waiting is not None:
            try:
                recorded = await waiting
            except asyncio.CancelledError:
                target.status, target.reason = ABORTED, "aborted"
                self.bus.emit(
                    ApplyFinished, **common, outcome="aborted", reason="aborted", duration=0.0
                )
                raise
        if self.refusal is None:
            return True
        if recorded:  # its start is recorded, then the history failed: it ends here, unlaunched
            target.status, target.reason = ABORTED, f"not started: {self.refusal}"
            self.bus.emit(
                ApplyFinished, **common, outcome="aborted", reason=target.reason, duration=0.0
            )
            return False
        # Its start could not be recorded: an apply history does not know is never launched.
        target.status = status_before
        target.attempts -= 1
        return False

    async def _finish_recorded(self) -> None:
        """An apply is over once its finish is durable (the wave's finishes commit together)."""
        waiting = self.recorded(False) if self.recorded is not None else None
        if waiting is not None:
            await waiting

    async def adopt(self, wave: int, target: TargetState) -> bool:
        """Look for the apply of ``target`` whose outcome is unknown (a stopped sluice's) and, if
        it is still running or has finished, record its real outcome; True if it was adopted."""
        executor = self.executor(target.executor)
        if self.spools is None or not getattr(executor, "spools", False):
            return False
        spool = self.spools.latest(target.name)
        info = spool.info() if spool is not None else {}
        if spool is None or not info:
            return False
        common = {k: info[k] for k in ("wave", "target", "version", "from_version", "action")}
        common["wave"] = wave
        job = Job(
            target=target.name,
            channel=target.channel,
            module=self.module,
            version=common["version"],
            previous_version=common["from_version"],
            action="rollback" if common["action"] == "rollback" else "apply",
            vars=self.estate.targets[target.name].vars,
            spool=spool.base,
            on_stop=self.stops.noter(target.name),
        )
        how = await executor.look(job)  # type: ignore[attr-defined]
        if how not in ("running", "finished"):
            return False
        self.bus.emit(ApplyAdopted, **common, how=how, spool=str(spool.base))
        target.status = ROLLING_BACK if job.action == "rollback" else APPLYING
        sink = self._sink(target, job)
        what = "adopted: re-attached to it running" if how == "running" else (
            "adopted: it finished while no sluice ran"
        )  # fmt: skip
        work = executor.adopt(job, sink)  # type: ignore[attr-defined]
        try:
            await self._finish(target, common, work, sink=sink, adopted=what)
        finally:
            self.stops.ended(target.name)
        return target.status != UNKNOWN

    async def close(self, checks: list[CheckSource]) -> None:
        """Close every executor and ``checks``, then the shared resources; never raises."""
        closeables: list[Executor | CheckSource] = [*self._executors.values(), *checks]
        for closeable in closeables:
            with contextlib.suppress(Exception):  # closing must never mask the outcome
                await closeable.close()
        await self.resources.close()


async def _refused(reason: str) -> ApplyResult:
    return ApplyResult(False, reason)


def collect_secrets(estate: Estate) -> list[str]:
    """Values of every ``{env.X}`` the estate mentions, to mask in output and reasons."""
    names: set[str] = set()
    for settings in [
        *(e.settings for e in estate.executors.values()),
        *(c.settings for c in estate.checks.values()),
    ]:
        for value in settings.values():
            if isinstance(value, str):
                texts = [value]
            elif isinstance(value, dict):
                texts = [v for v in value.values() if isinstance(v, str)]
            else:
                texts = []
            for text in texts:
                names.update(n[4:] for n in placeholders(text) if n.startswith("env."))
    return [os.environ[n] for n in sorted(names) if os.environ.get(n)]
