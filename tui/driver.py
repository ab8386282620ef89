"""The console's hold on the engine: the session (history, lease, ledger) and the rollout it drives.

Screens never build rollouts or touch history themselves: they ask a :class:`RolloutDriver`.
:func:`open_session` is the one place a session is opened (tests give it a scratch history).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sluice.engine.app.fd_check import NotEnoughDescriptors
from sluice.engine.app.session import LeaseHeld, ResumeError, Session
from sluice.engine.model.estate import Estate
from sluice.engine.model.plan import Plan
from sluice.engine.rollout.events import Event
from sluice.engine.rollout.orchestrator import Rollout
from sluice.engine.rollout.state import CommandResult, Outcome
from sluice.engine.store.history import RolloutRecord
from sluice.engine.support.clock import Clock

__all__ = ["LeaseHeld", "ResumeError", "RolloutDriver", "open_session"]

NOT_RUNNING = "no rollout is running — press n to start one"


def open_session(estate: Estate, *, drive: bool = True, **options: Any) -> Session:
    """The console's one way to an engine session (raises LeaseHeld when another drives);
    ``options`` go to :meth:`Session.open` (tests pass a frozen ``wall`` and ``bus``)."""
    return Session.open(estate, drive=drive, **options)


class RolloutDriver:
    """Plans, starts, resumes and commands rollouts for the console.

    Args:
        session: the estate's open session.
        clock: the engine clock every rollout gets (``--time-scale``, or a frozen one in tests).
        read_only: the lease is held elsewhere: every command is refused, saying by whom.
        rollout_options: extra ``Rollout`` arguments (tests pass an ``executor_factory``).
    """

    def __init__(
        self,
        session: Session,
        clock: Clock,
        *,
        read_only: str | None = None,
        rollout_options: dict[str, Any] | None = None,
    ):
        self.session = session
        self.rollout_options = dict(rollout_options or {})
        self.estate = session.estate
        self.clock = clock
        self.read_only = read_only
        self.rollout: Rollout | None = None
        self.task: asyncio.Task[Any] | None = None
        self.outcome: Outcome | None = None

    # ------------------------------------------------------------------ state

    def active(self) -> bool:
        """A rollout is running or waiting for the operator (not finished)."""
        return self.rollout is not None and self.rollout.outcome is None

    def current_versions(self, module: str) -> dict[str, str]:
        return self.session.current_versions(module)

    def last_version(self, module: str) -> str | None:
        """The version of ``module``'s most recent rollout, if any."""
        for record in self.session.history.rollouts():
            if record.kind == "rollout" and record.module == module:
                return record.version
        return None

    def frozen(self) -> str | None:
        """Why no new wave or rollout may start on this estate (``sluice freeze``), if frozen."""
        from sluice.engine.app.governance import freeze_of

        found = freeze_of(self.session.history, self.estate.name)
        return None if found is None else found.text()

    def recorded_events(self, rollout_id: int) -> list[Event]:
        return self.session.history.events(rollout_id)

    def resumable(self) -> RolloutRecord | None:
        """A rollout left running by a dead console, or stopped, that can be resumed."""
        if self.read_only:
            return None
        try:
            return self.session.resumable(None)
        except ResumeError:
            return None

    # ------------------------------------------------------------------ starting

    def plan(self, module: str, version: str) -> Plan:
        """Raises sluice.engine.model.plan.PlanError for an unknown module or version."""
        return self.session.plan(module, version)

    def start(self, plan: Plan, extra: dict[str, Any] | None = None) -> Rollout:
        """``extra`` is recorded with the plan (a restore's marker)."""
        self._refuse_if_read_only()
        frozen = self.frozen()
        if frozen:
            raise PermissionError(f"not started: {frozen}")
        try:
            self.rollout = self.session.new_rollout(
                plan, clock=self.clock, interactive=True, extra=extra, **self.rollout_options
            )
        except NotEnoughDescriptors as exc:  # refused like a freeze: one line, nothing recorded
            raise PermissionError(str(exc)) from None
        self.outcome = None
        return self.rollout

    def resume(self, record: RolloutRecord) -> Rollout:
        self._refuse_if_read_only()
        self.rollout = self.session.resume_rollout(
            record, clock=self.clock, interactive=True, **self.rollout_options
        )
        self.outcome = None
        return self.rollout

    async def drive(self) -> Outcome:
        """Run the current rollout to its end (keeping the lease alive)."""
        assert self.rollout is not None
        self.task = asyncio.current_task()
        self.outcome = await self.session.drive(self.rollout)
        return self.outcome

    async def supersede(self, by: str) -> None:
        """Stop a halted or waiting rollout because ``by`` (``"module version"``) replaces it.

        Its outcome is recorded ``superseded`` (not ``aborted``); waits for it to end.
        """
        if self.rollout is None or not self.active():
            return
        self.rollout.abort(reason=f"superseded by {by}", superseded_by=by)
        for _ in range(200):
            if not self.active():
                return
            await asyncio.sleep(0.05)

    def _refuse_if_read_only(self) -> None:
        if self.read_only:
            raise PermissionError(self.read_only)

    # ------------------------------------------------------------------ commands

    def command(self, call: Callable[[Rollout], CommandResult]) -> CommandResult:
        """Call an operator command on the rollout (``lambda r: r.retry(target)``, or
        ``Rollout.advance``); refusals — none running, read-only — come back with the reason."""
        if self.read_only:
            return CommandResult(False, self.read_only)
        if self.rollout is None:
            return CommandResult(False, NOT_RUNNING)
        return call(self.rollout)

    def pause_or_resume(self) -> CommandResult:
        paused = self.rollout is not None and self.rollout.paused
        return self.command(Rollout.resume if paused else Rollout.pause)

    def left_running(self) -> tuple[str, str] | None:
        """For quitting while a rollout is unfinished: (what to ask, what to say after exit)."""
        if not self.active() or self.rollout is None:
            return None
        r = self.rollout
        what = f"rollout #{r.rollout_id} ({r.plan.module} → {r.plan.version})"
        where = f"{r.state.replace('_', ' ')} at wave {r.current_wave or 1}"
        how = f"open the console again, or run `sluice resume {self.estate.path} {r.rollout_id}`"
        ask = (
            f"{what[0].upper()}{what[1:]} is {where}.\n\nQuitting stops this console driving "
            f"it: in-flight applies are stopped and nothing new starts. It stays resumable: {how}."
        )
        return ask, f"{what} was left {where}; it is resumable: {how}"
