"""An estate opened for driving: its history, the one-driver lease, the ledger, and rollouts.

The console and the headless CLI both go through a :class:`Session`, so they record, lease and
resume the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sluice.engine.app.fd_check import require_descriptors
from sluice.engine.app.governance import RequestPump, freeze_of
from sluice.engine.app.governance import actor as governance_actor
from sluice.engine.app.resumption import (
    ResumeError,
    plan_from_record,
    resume_point,
    rollback_plan,
)
from sluice.engine.executors.base import Executor, create_executor
from sluice.engine.model.estate import Estate
from sluice.engine.model.plan import Plan, make_plan
from sluice.engine.rollout.events import EventBus
from sluice.engine.rollout.jobs import current_user
from sluice.engine.rollout.options import RolloutOptions
from sluice.engine.rollout.orchestrator import Rollout
from sluice.engine.rollout.state import (
    RESUMABLE,
    Outcome,
    RolloutOutcome,
)
from sluice.engine.store.backend import ConnectionLost
from sluice.engine.store.history import History, HistoryNotWritable, RolloutRecord
from sluice.engine.store.lease import LEASE_TIMEOUT, Lease, LeaseHeld, LeaseLost
from sluice.engine.store.recorder import Recorder
from sluice.engine.store.write_failure import WRITE_ERRORS, HistoryIdentity, describe
from sluice.engine.support.clock import Clock

if TYPE_CHECKING:
    from sluice.engine.app.notify import Notifications

__all__ = ["LEASE_TIMEOUT", "LeaseHeld", "LeaseLost", "ResumeError", "Session", "plan_from_record"]

HEARTBEAT_SECONDS = 5.0


class Session:
    """Open with :meth:`open`; always :meth:`close` (releases the lease)."""

    def __init__(
        self,
        estate: Estate,
        history: History,
        *,
        drive: bool,
        wall: Callable[[], float] = time.time,
        bus: Callable[..., EventBus] = EventBus,
    ):
        self.estate = estate
        self.history = history
        #: Wall-clock seconds for what the session records (lease, rollouts' start); tests
        #: pass a frozen one, with an EventBus factory whose events they stamp themselves.
        self.wall = wall
        self.bus_factory = bus
        self.driving = drive
        self.recorders: list[Recorder] = []
        self.user = current_user()
        self.lease = Lease(history.db, estate.name, self.user)
        self.host = self.lease.host
        self.pid = self.lease.pid
        self.actor = governance_actor()  # SLUICE_ACTOR or user@host: who commands and approves
        self.takeover: str | None = None
        #: The one line to print when the history could not be written during a rollout.
        self.history_failure: str | None = None
        #: Why this process stopped driving: it lost the lease (None while it holds it).
        self.lost: str | None = None
        self._rollout: Rollout | None = None
        self._notifications: Notifications | None = None

    @classmethod
    def open(
        cls,
        estate: Estate,
        *,
        drive: bool = True,
        history_path: Path | str | None = None,
        wall: Callable[[], float] = time.time,
        bus: Callable[..., EventBus] = EventBus,
    ) -> Session:
        """Open the estate's history; with ``drive``, take the lease or raise :class:`LeaseHeld`."""
        where = history_path or estate.history
        # Only a driver writes; a watcher (or a replay) reads, and may lack write access.
        readonly = not drive and isinstance(where, Path) and where.exists()
        history = History.open(where, readonly=readonly)
        session = cls(estate, history, drive=drive, wall=wall, bus=bus)
        if drive:
            try:
                session.lease.acquire()
            except WRITE_ERRORS as exc:
                history.close()
                raise HistoryNotWritable(
                    f"{where}: the history is not writable ({describe(exc, Path(str(where)))})"
                ) from None
            except BaseException:
                history.close()
                raise
            session.takeover = session.lease.takeover
            history.fence = session.lease  # every write from here on checks the lease
        return session

    # ------------------------------------------------------------------ lease

    def _me(self) -> str:
        return f"{self.user}@{self.host} pid {self.pid}"

    def heartbeat(self) -> bool:
        """Renew the lease; False when it is no longer ours (taken over while we were silent)."""
        return self.lease.heartbeat()

    async def keep_alive(self, rollout: Rollout | None = None) -> None:
        """Renew the lease every few seconds (run it as a task). If another process took the
        lease over, the rollout stops at once (:meth:`lose_lease`)."""
        identity = HistoryIdentity(self.history.path)
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            if any(r.failure for r in self.recorders) or identity.gone():
                return  # the history cannot be written: the rollout is stopping (HistoryGuard)
            try:
                ours = self.heartbeat()
            except ConnectionLost:  # a restarted server: the recorder's next write waits for it
                self.history.db.reconnect(0)
                continue
            except Exception:  # a busy database: try again at the next beat
                continue
            if not ours:
                self.lose_lease(LeaseLost(self.lease.lost_text()))
                return

    def lose_lease(self, exc: LeaseLost) -> None:
        """Another process took the lease over: write nothing more, launch nothing more, and
        stop the rollout now — its in-flight applies are stopped as an abort stops them."""
        if self.lost is not None:
            return
        self.lost = str(exc)
        for recorder in self.recorders:
            recorder.lost = recorder.lost or self.lost
        rollout = self._rollout
        if rollout is None:
            return
        from sluice.engine.rollout.events import Notice

        rollout.bus.emit(
            Notice,
            level="error",
            message=f"{self.lost} — stopping at once: no apply starts, nothing more is recorded",
        )
        task = rollout._task
        if task is not None and not task.done():
            asyncio.get_running_loop().call_soon(task.cancel)

    @staticmethod
    def _say(bus: EventBus, message: str) -> None:
        """A notice from inside a listener: emitted once the listener has returned."""
        from sluice.engine.rollout.events import Notice

        with contextlib.suppress(RuntimeError):  # no loop: nobody is watching
            asyncio.get_running_loop().call_soon(
                lambda: bus.emit(Notice, level="warning", message=message)
            )

    def close(self) -> None:
        if self.driving and self.lease.epoch is not None:
            with contextlib.suppress(Exception):
                self.lease.release()
        self.history.close()

    # ------------------------------------------------------------------ rollouts

    def current_versions(self, module: str) -> dict[str, str]:
        """Each target's version of ``module`` from the ledger (absent: the module's ``initial``)."""
        return self.history.ledger(module)

    def plan(self, module: str, version: str) -> Plan:
        return make_plan(self.estate, module, version, self.current_versions(module))

    def _wire(self, rollout_id: int, module: str, *, start_seq: int = 1) -> EventBus:
        bus = self.bus_factory(start_seq=start_seq)
        recorder = Recorder(self.history, rollout_id, module)
        recorder.on_lost = self.lose_lease
        recorder.on_connection = lambda message: self._say(bus, message)
        self.recorders.append(recorder)
        bus.listen(recorder)
        return bus

    def new_rollout(
        self,
        plan: Plan,
        *,
        clock: Clock | None = None,
        extra: dict[str, Any] | None = None,
        executor_factory: Callable[..., Executor] = create_executor,
        **options: Any,
    ) -> Rollout:
        """Record a new rollout of ``plan`` and return it, ready to ``run()``.

        ``extra`` is recorded with the plan (a restore's ``{"restore": …}`` marker); ``options``
        are the :class:`RolloutOptions` fields (``interactive=``, ``approve=``, …). Raises
        :class:`~sluice.engine.app.fd_check.NotEnoughDescriptors` before recording anything
        when the plan's applies cannot get file descriptors.
        """
        require_descriptors(self.estate, plan)
        froms = sorted({t.from_version for t in plan.targets if not t.noop}) or [plan.version]
        rollout_id = self.history.create_rollout(
            estate=self.estate.name,
            module=plan.module,
            version=plan.version,
            from_versions=",".join(froms),
            actor=self.user,
            host=self.host,
            plan={**plan.to_dict(), **(extra or {})},
            started=self.wall(),
        )
        bus = self._wire(rollout_id, plan.module)
        return Rollout(
            self.estate,
            plan,
            rollout_id=rollout_id,
            bus=bus,
            clock=clock,
            actor=self.actor,
            options=RolloutOptions(**options),
            executor_factory=executor_factory,
        )

    def resumable(self, rollout_id: int | None = None) -> RolloutRecord:
        """The rollout to resume: ``rollout_id``, or the newest one left running or stopped."""
        if rollout_id is not None:
            record = self.history.rollout(rollout_id)
            if record is None:
                raise ResumeError(f"there is no rollout #{rollout_id} in {self.history.path}")
            if record.outcome not in RESUMABLE:
                raise ResumeError(
                    f"rollout #{rollout_id} ended {record.outcome}; start a new rollout instead"
                )
            if record.kind != "rollout":
                raise ResumeError(f"#{rollout_id} is a {record.kind}, not a rollout")
            return record
        candidates = [r for r in self.history.unfinished() if r.kind == "rollout"]
        if not candidates:
            raise ResumeError("no rollout of this estate is left running or stopped")
        return candidates[0]

    def resume_rollout(
        self,
        record: RolloutRecord,
        *,
        clock: Clock | None = None,
        executor_factory: Callable[..., Executor] = create_executor,
        **options: Any,
    ) -> Rollout:
        """Continue ``record``: finished applies are never re-run; unknown ones are re-applied
        (unless ``reapply_unknown=False``; ``options`` are the :class:`RolloutOptions` fields)."""
        plan = plan_from_record(self.estate, record.plan)
        point = resume_point(self.history, record.id, plan)
        self.history.reopen_rollout(record.id)
        bus = self._wire(record.id, plan.module, start_seq=self.history.last_seq(record.id) + 1)
        return Rollout(
            self.estate,
            plan,
            rollout_id=record.id,
            bus=bus,
            clock=clock,
            actor=self.actor,
            options=RolloutOptions(**options),
            resume=point,
            executor_factory=executor_factory,
        )

    def rollback_rollout(
        self, source: RolloutRecord, targets: list[str], *, clock: Clock | None = None
    ) -> Rollout:
        """A recorded rollback of ``targets`` to the versions the ledger had before ``source``."""
        module = source.module
        plan, todo = rollback_plan(self.estate, self.history, source, targets)
        rollout_id = self.history.create_rollout(
            estate=self.estate.name,
            module=module,
            version=plan.version,
            from_versions=",".join(sorted({t.to_version for t in todo})) or "-",
            actor=self.user,
            host=self.host,
            plan={**plan.to_dict(), "rollback_of": source.id},
            started=self.wall(),
            kind="rollback",
        )
        bus = self._wire(rollout_id, module)
        return Rollout(
            self.estate,
            plan,
            rollout_id=rollout_id,
            bus=bus,
            clock=clock,
            actor=self.actor,
            options=RolloutOptions(interactive=False, rollback_only=True),
        )

    def write_crash_log(self, exc: BaseException) -> str | None:
        """The traceback of an engine failure, in a file beside the history (owner-only)."""
        where = self.history.path  # a file's path, or a PostgreSQL URL (then beside the estate)
        base = where.parent if isinstance(where, Path) else self.estate.path.parent / ".sluice"
        folder = base / "logs"
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(self.wall()))
            path = folder / f"crash-{stamp}-{os.getpid()}.log"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write("".join(traceback.format_exception(exc)))
        except OSError:
            return None
        return str(path)

    def interrupt(self, reason: str) -> None:
        """A signal once the rollout has ended: stop waiting for its notifications' delivery."""
        if self._notifications is not None:
            self._notifications.interrupt(reason)

    async def drive(self, rollout: Rollout) -> Outcome:
        """Run ``rollout`` while keeping the lease alive."""
        from sluice.engine.app.history_guard import HistoryGuard
        from sluice.engine.app.notify import Notifications

        if rollout.on_crash is None:
            rollout.on_crash = self.write_crash_log
        recorder = next(r for r in reversed(self.recorders) if r.rollout_id == rollout.rollout_id)
        guard = HistoryGuard(rollout, recorder, self.history.path)

        self._rollout = rollout
        heart = asyncio.ensure_future(self.keep_alive(rollout))
        rollout.set_freeze(freeze_of(self.history, self.estate.name))
        pump = asyncio.ensure_future(RequestPump(self.history, rollout, self._me()).run())
        notifications = self._notifications = Notifications(self.estate.notify)
        notifications.start(rollout.bus)
        try:
            if self.takeover:
                from sluice.engine.rollout.events import Notice

                rollout.bus.emit(Notice, level="warning", message=self.takeover)
            try:
                return await rollout.run()
            except (asyncio.CancelledError, LeaseLost, BaseExceptionGroup):
                if self.lost is None:
                    raise
                task = asyncio.current_task()
                if task is not None:
                    while task.cancelling():
                        task.uncancel()
                return Outcome(RolloutOutcome.LEASE_LOST, self.lost)
        finally:
            for task in (heart, pump):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            rollout.bus.close()
            await notifications.aclose()  # delivery failures become Notices, still recorded
            for recorder in self.recorders:
                recorder.flush()
            self.history_failure = guard.message
