"""An estate opened for driving: its history, the one-driver lease, the ledger, and rollouts.

The console and the headless CLI both go through a :class:`Session`, so they record, lease and
resume the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sluice.engine.app.governance import RequestPump, freeze_of
from sluice.engine.app.governance import actor as governance_actor
from sluice.engine.model.estate import Estate
from sluice.engine.model.plan import Plan, PlanError, PlannedTarget, Wave, make_plan
from sluice.engine.rollout.events import EventBus
from sluice.engine.rollout.jobs import current_user
from sluice.engine.rollout.orchestrator import Rollout
from sluice.engine.rollout.state import FAILED, OK, RESUMABLE, ROLLED_BACK, UNKNOWN, Outcome
from sluice.engine.store.history import DONE_OUTCOMES, History, HistoryNotWritable, RolloutRecord
from sluice.engine.store.recorder import Recorder
from sluice.engine.store.write_failure import WRITE_ERRORS, HistoryIdentity, describe
from sluice.engine.support.clock import Clock

#: A lease whose holder has not written a heartbeat for this long is taken over.
LEASE_TIMEOUT = 30.0
HEARTBEAT_SECONDS = 5.0


INTERRUPTED_ROLLBACK = (
    "interrupted: its driver stopped before it finished; targets it did not finish keep the "
    "version the ledger shows — run `sluice rollback` again"
)


class LeaseHeld(Exception):
    """Another process drives this estate (exit code 5)."""

    @property
    def refusal(self) -> str:
        """The one line a command that wanted to drive prints (the console and the CLI)."""
        return f"sluice: {self}; it may be watched, not driven, from here"


class ResumeError(Exception):
    """Nothing to resume, or the rollout cannot be resumed (exit code 2)."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purpose
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


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
        self.host = socket.gethostname()
        self.actor = governance_actor()  # SLUICE_ACTOR or user@host: who commands and approves
        self.pid = os.getpid()
        self.takeover: str | None = None
        #: The one line to print when the history could not be written during a rollout.
        self.history_failure: str | None = None

    @classmethod
    def open(
        cls,
        estate: Estate,
        *,
        drive: bool = True,
        history_path: Path | None = None,
        wall: Callable[[], float] = time.time,
        bus: Callable[..., EventBus] = EventBus,
    ) -> Session:
        """Open the estate's history; with ``drive``, take the lease or raise :class:`LeaseHeld`."""
        path = history_path or estate.history_path
        # Only a driver writes; a watcher (or a replay) reads, and may lack write access.
        history = History.open(path, readonly=not drive and path.exists())
        session = cls(estate, history, drive=drive, wall=wall, bus=bus)
        if drive:
            try:
                session._acquire()
            except WRITE_ERRORS as exc:
                history.close()
                raise HistoryNotWritable(
                    f"{path}: the history is not writable ({describe(exc, path)})"
                ) from None
            except BaseException:
                history.close()
                raise
        return session

    # ------------------------------------------------------------------ lease

    def _holder_text(self, row: dict[str, Any]) -> str:
        age = self.wall() - row["heartbeat"]
        return f"{row['user']}@{row['host']} (pid {row['pid']}, last heartbeat {age:.0f}s ago)"

    def _acquire(self) -> None:
        conn = self.history.db.conn
        now = self.wall()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "SELECT user, host, pid, acquired, heartbeat FROM lease WHERE estate = ?",
                [self.estate.name],
            ).fetchone()
            if row is not None:
                holder = dict(
                    zip(("user", "host", "pid", "acquired", "heartbeat"), row, strict=True)
                )
                mine = holder["host"] == self.host and holder["pid"] == self.pid
                dead = holder["host"] == self.host and not _alive(holder["pid"])
                silent = now - holder["heartbeat"] > LEASE_TIMEOUT
                if not (mine or dead or silent):
                    raise LeaseHeld(
                        f"estate {self.estate.name!r} is driven by {self._holder_text(holder)}"
                    )
                if not mine:
                    why = (
                        "holder process is gone"
                        if dead
                        else f"no heartbeat for {now - holder['heartbeat']:.0f}s"
                    )
                    self.takeover = f"took over the lease from {holder['user']}@{holder['host']} pid {holder['pid']}: {why}"
                    conn.execute(
                        "INSERT INTO lease_log (ts, estate, action, holder, previous) VALUES (?, ?, 'takeover', ?, ?)",
                        [
                            now,
                            self.estate.name,
                            self._me(),
                            f"{holder['user']}@{holder['host']} pid {holder['pid']} ({why})",
                        ],
                    )
            conn.execute(
                "INSERT OR REPLACE INTO lease (estate, user, host, pid, acquired, heartbeat) VALUES (?, ?, ?, ?, ?, ?)",
                [self.estate.name, self.user, self.host, self.pid, now, now],
            )
            if row is None:
                conn.execute(
                    "INSERT INTO lease_log (ts, estate, action, holder) VALUES (?, ?, 'acquire', ?)",
                    [now, self.estate.name, self._me()],
                )
            # A rollback still "running" while we hold the lease has no driver: its process died.
            # It cannot be resumed (a new `sluice rollback` plans again from the ledger), so it
            # ends here rather than claiming to run forever.
            conn.execute(
                "UPDATE rollouts SET outcome = 'interrupted', finished = ?, summary = ? "
                "WHERE kind = 'rollback' AND outcome = 'running'",
                [now, INTERRUPTED_ROLLBACK],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _me(self) -> str:
        return f"{self.user}@{self.host} pid {self.pid}"

    def heartbeat(self) -> bool:
        """Renew the lease; False when it is no longer ours (taken over while we were silent)."""
        with self.history.db.atomic():
            cursor = self.history.db.execute(
                "UPDATE lease SET heartbeat = ? WHERE estate = ? AND pid = ? AND host = ?",
                [self.wall(), self.estate.name, self.pid, self.host],
            )
        return cursor.rowcount > 0

    async def keep_alive(self, rollout: Rollout | None = None) -> None:
        """Renew the lease every few seconds (run it as a task). If another process took the
        lease over, ``rollout`` is paused — two drivers must never apply at once — and told why."""
        identity = HistoryIdentity(self.history.path)
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            if any(r.failure for r in self.recorders) or identity.gone():
                return  # the history cannot be written: the rollout is stopping (HistoryGuard)
            try:
                ours = self.heartbeat()
            except Exception:  # a busy database: try again at the next beat
                continue
            if not ours and rollout is not None:
                from sluice.engine.rollout.events import Notice

                rollout.bus.emit(
                    Notice,
                    level="error",
                    message="the lease on this estate was taken over by another process: paused",
                )
                rollout.pause(reason="lease lost", actor="sluice")
                return

    def close(self) -> None:
        if self.driving:
            with contextlib.suppress(Exception), self.history.db.atomic():
                released = self.history.db.execute(
                    "DELETE FROM lease WHERE estate = ? AND pid = ? AND host = ?",
                    [self.estate.name, self.pid, self.host],
                ).rowcount
                # Taken over while we were silent: the lease is someone else's now; say so.
                self.history.db.execute(
                    "INSERT INTO lease_log (ts, estate, action, holder) VALUES (?, ?, ?, ?)",
                    [self.wall(), self.estate.name, "release" if released else "lost", self._me()],
                )
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
        self.recorders.append(recorder)
        bus.listen(recorder)
        return bus

    def new_rollout(
        self,
        plan: Plan,
        *,
        clock: Clock | None = None,
        interactive: bool = True,
        extra: dict[str, Any] | None = None,
        **options: Any,
    ) -> Rollout:
        """Record a new rollout of ``plan`` and return it, ready to ``run()``.

        ``extra`` is recorded with the plan (a restore's ``{"restore": …}`` marker).
        """
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
            interactive=interactive,
            **options,
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
        interactive: bool = True,
        reapply_unknown: bool = True,
        **options: Any,
    ) -> Rollout:
        """Continue ``record``: finished applies are never re-run; unknown ones are re-applied."""
        plan = plan_from_record(self.estate, record.plan)
        prior: dict[str, tuple[str, str]] = {}
        for row in self.history.applies(record.id):
            if row["outcome"] == "started":
                prior[row["target"]] = (UNKNOWN, row["from_version"])
            elif row["outcome"] == "ok":
                prior[row["target"]] = (
                    ROLLED_BACK if row["action"] == "rollback" else OK,
                    row["version"],
                )
            elif row["outcome"] == "failed":
                prior[row["target"]] = (FAILED, row["from_version"])
            else:
                # Cut off mid-apply (the console quit, the task was cancelled): what it did is
                # unknown, exactly like an apply a crash interrupted.
                prior[row["target"]] = (UNKNOWN, row["from_version"])
        recorded_waves = self.history.waves(record.id)
        done = {w["number"] for w in recorded_waves if w["outcome"] in DONE_OUTCOMES}
        # A wave that started before the restart had its entry approval then.
        entered = {w["number"] for w in recorded_waves if w["started"] is not None}
        start_wave = next(
            (w.number for w in plan.waves if w.number not in done), len(plan.waves) + 1
        )
        baselines = {
            (row["wave"], row["check_name"], row["target"]): row["value"]
            for row in self.history.samples(record.id)
            if row["phase"] == "baseline" and row["wave"] >= start_wave
        }
        with self.history.db.atomic():
            self.history.db.execute(
                "UPDATE rollouts SET outcome = 'running', finished = NULL WHERE id = ?", [record.id]
            )
        bus = self._wire(record.id, plan.module, start_seq=self.history.last_seq(record.id) + 1)
        return Rollout(
            self.estate,
            plan,
            rollout_id=record.id,
            bus=bus,
            clock=clock,
            actor=self.actor,
            interactive=interactive,
            start_wave=start_wave,
            prior=prior,
            baselines=baselines,
            resumed=True,
            reapply_unknown=reapply_unknown,
            entered=entered,
            **options,
        )

    def rollback_rollout(
        self, source: RolloutRecord, targets: list[str], *, clock: Clock | None = None
    ) -> Rollout:
        """A recorded rollback of ``targets`` to the versions the ledger had before ``source``."""
        module = source.module
        initial = (
            self.estate.modules[module].initial
            if module in self.estate.modules
            else source.from_versions
        )
        before = self.history.ledger(module, before_rollout=source.id)
        now = self.history.ledger(module)
        planned = []
        for name in targets:
            spec = self.estate.targets.get(name)
            if spec is None:
                raise ResumeError(f"target {name!r} is no longer in the estate")
            # from = what it should return to; to = what it runs now (the rollback undoes to → from).
            planned.append(
                PlannedTarget(
                    name,
                    spec.channel,
                    spec.executor,
                    before.get(name, initial),
                    now.get(name, initial),
                )
            )
        todo = [t for t in planned if not t.noop]
        channel = self.estate.channel(planned[0].channel) if planned else self.estate.channels[0]
        wave = Wave(1, channel, 0, tuple(planned), 0, 0.0, 0.0, waves_in_channel=1)
        plan = Plan(
            module, ",".join(sorted({t.from_version for t in todo})) or "-", (wave,), len(planned)
        )
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
        prior = {t.name: (OK, t.to_version) for t in todo}
        return Rollout(
            self.estate,
            plan,
            rollout_id=rollout_id,
            bus=bus,
            clock=clock,
            actor=self.actor,
            interactive=False,
            prior=prior,
            rollback_only=True,
        )

    def write_crash_log(self, exc: BaseException) -> str | None:
        """The traceback of an engine failure, in a file beside the history (owner-only)."""
        folder = self.history.path.parent / "logs"
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
            stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(self.wall()))
            path = folder / f"crash-{stamp}-{os.getpid()}.log"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write("".join(traceback.format_exception(exc)))
        except OSError:
            return None
        return str(path)

    async def drive(self, rollout: Rollout) -> Outcome:
        """Run ``rollout`` while keeping the lease alive."""
        from sluice.engine.app.history_guard import HistoryGuard
        from sluice.engine.app.notify import Notifications

        if rollout.on_crash is None:
            rollout.on_crash = self.write_crash_log
        recorder = next(r for r in reversed(self.recorders) if r.rollout_id == rollout.rollout_id)
        guard = HistoryGuard(rollout, recorder, self.history.path)
        heart = asyncio.ensure_future(self.keep_alive(rollout))
        rollout.set_freeze(freeze_of(self.history, self.estate.name))
        pump = asyncio.ensure_future(RequestPump(self.history, rollout, self._me()).run())
        notifications = Notifications(self.estate.notify)
        notifications.start(rollout.bus)
        try:
            if self.takeover:
                from sluice.engine.rollout.events import Notice

                rollout.bus.emit(Notice, level="warning", message=self.takeover)
            return await rollout.run()
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


def plan_from_record(estate: Estate, data: dict[str, Any]) -> Plan:
    """Rebuild the recorded plan against the estate (targets and channels must still exist)."""
    try:
        return Plan.from_dict(estate, data)
    except PlanError as exc:
        raise ResumeError(str(exc)) from None
