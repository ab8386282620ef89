"""Governance of a running rollout: what must hold before a wave starts, and approvals by N people.

Before each wave the orchestrator calls :meth:`Governed.clear_to_start`: the estate must not be
frozen, the channel's change windows must be open (or bypassed, with a reason), and the first wave
of a channel with ``entry = "manual"`` must be approved — by ``approvers`` distinct people, like
every manual approval. A console (or a headless run with ``wait``) waits there; a headless run
without it stops, resumable (exit 4), saying what it waits for. Nothing of the wave has started:
no baseline, no apply.

After a wave's soak, a gate or a halt waits for the operator the same way
(:meth:`Governed._await_operator`); a headless run decides by policy instead: ``--approve``
approves, otherwise it stops or halts.

The freeze itself lives in history; the application layer tells the rollout with
:meth:`Governed.set_freeze` (and wakes it) — the engine never reads history itself.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from sluice.engine.model.plan import Wave
from sluice.engine.model.windows import Closed, closed, utc
from sluice.engine.rollout.controls import APPROVED
from sluice.engine.rollout.events import OperatorAction
from sluice.engine.rollout.state import CommandResult, Finish, RolloutOutcome
from sluice.engine.rollout.target_commands import TargetCommands

#: How often a held wave looks at its windows again (real seconds; a freeze or a bypass wakes
#: it at once).
RECHECK_SECONDS = 1.0


@dataclass(frozen=True)
class Freeze:
    """An estate-wide stop of new waves and new rollouts (``sluice freeze``)."""

    actor: str
    reason: str
    since: float
    until: float | None = None

    def text(self) -> str:
        until = ""
        if self.until is not None:
            until = f" until {utc(self.until).astimezone():%Y-%m-%d %H:%M %Z}"
        return f"estate frozen by {self.actor}{until}: {self.reason}"

    def active(self, now: float) -> bool:
        return self.until is None or now < self.until


class Governed(TargetCommands):
    """Adds freezes, change windows, entry approvals and N-person approvals to the controls."""

    freeze: Freeze | None = None

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._wake = asyncio.Event()
        self._approvals: dict[str, str] = {}  # actor → reason, for the approval being waited for
        self._bypassed_windows: set[int] = set()
        self._holding: str | None = None  # "window" | "freeze" while a wave is held

    # ------------------------------------------------------------------ inputs

    def set_freeze(self, freeze: Freeze | None) -> None:
        """The estate's freeze as history has it now (``None``: not frozen)."""
        if freeze != self.freeze:
            self.freeze = freeze
            self._wake.set()

    def advance(self, reason: str = "", actor: str | None = None) -> CommandResult:
        """Approve (one person's approval of) a waiting entry or gate, else as the controls do."""
        if self.review is not None and self.review.pending():  # first: a retry's new plan
            return self._decide_retry_plan(True, actor, reason)
        if self._waiting in ("awaiting_approval", "entry") and self._decision:
            return self._count_approval(actor or self.actor, reason)
        return super().advance(reason, actor)

    def bypass(self, reason: str, actor: str | None = None) -> CommandResult:
        """Also starts a wave held by a closed window (an entry approval is bypassed as a gate)."""
        held = self.bypass_window(reason, actor)
        return held if held is not None else super().bypass(reason, actor)

    def needed_approvals(self, wave: Wave) -> int:
        return wave.channel.approvers

    def approve_wave(
        self, reason: str = "", actor: str | None = None, wave: int | None = None
    ) -> CommandResult:
        """One person's approval of the entry or gate being waited for (``wave``: which one)."""
        if not self._active():
            return CommandResult(False, "no rollout is running")
        if self._waiting not in ("awaiting_approval", "entry") or self._decision is None:
            where = f"wave {wave}" if wave is not None else "no wave"
            return CommandResult(False, f"{where} is not waiting for approval")
        if wave is not None and wave != self.current_wave:
            return CommandResult(
                False, f"wave {wave} is not waiting for approval (wave {self.current_wave} is)"
            )
        return self._count_approval(actor or self.actor, reason)

    def _count_approval(self, actor: str, reason: str) -> CommandResult:
        current = self.plan.waves[(self.current_wave or 1) - 1]
        needed = self.needed_approvals(current)
        if actor in self._approvals:
            return CommandResult(
                False,
                f"{actor} already approved wave {current.number}: {len(self._approvals)} of "
                f"{needed}; another person must approve",
            )
        self._approvals[actor] = reason
        self.bus.emit(
            OperatorAction, action="approve", actor=actor, reason=reason, wave=current.number
        )
        who = ", ".join(self._approvals)
        if len(self._approvals) >= needed:
            self._decide(APPROVED)
            by = f" (by {who})" if needed > 1 else ""
            return CommandResult(True, f"wave {current.number} approved{by}")
        self._set_phase(self._phase, current.number, self._approval_text(current))
        return CommandResult(
            True,
            f"{len(self._approvals)} of {needed} approvals of wave {current.number} (by {who}); "
            "waiting for another person",
        )

    def _approval_text(self, wave: Wave, gate: bool = False) -> str:
        needed = self.needed_approvals(wave)
        got = len(self._approvals)
        who = f" (by {', '.join(self._approvals)})" if self._approvals else ""
        what = (
            f"gate passed; {wave.channel.name} needs approval to continue"
            if gate
            else f"{wave.channel.name} needs approval to start"
        )
        return f"{what}: {got} of {needed}{who}"

    # ------------------------------------------------------------------ before a wave

    async def clear_to_start(self, wave: Wave) -> None:
        """Return when ``wave`` may start; raise :class:`Finish` (stopped) where headless stops."""
        while True:
            await self._hold(wave)
            if self._needs_entry(wave):
                await self._entry_approval(wave)
                self.entered = self.entered | {wave.number}
                continue  # a freeze or a closing window while it waited holds it again
            return

    def _needs_entry(self, wave: Wave) -> bool:
        return (
            wave.channel.entry == "manual"
            and wave.index_in_channel == 0
            and wave.number not in self.entered
            and any(not t.noop for t in wave.targets)
        )

    async def _entry_approval(self, wave: Wave) -> None:
        self.current_wave = wave.number
        self._approvals = {}
        if self.options.approve:
            self._approvals[self.actor] = "--approve"
            self.bus.emit(
                OperatorAction,
                action="approve",
                actor=self.actor,
                reason="--approve",
                wave=wave.number,
            )
            if len(self._approvals) >= self.needed_approvals(wave):
                return
        if not (self.options.interactive or self.options.wait):
            self._set_phase("awaiting_entry", wave.number, self._approval_text(wave))
            raise Finish(
                RolloutOutcome.STOPPED,
                f"wave {wave.number} ({wave.name}) not started: {self._approval_text(wave)}; "
                "continue with `sluice resume --approve`, or `--wait` for `sluice approve`",
            )
        await self._wait_decision(wave, "entry", "awaiting_entry", self._approval_text(wave))

    def _blocker(self, wave: Wave) -> tuple[str, str] | None:
        """(kind, why) that holds ``wave`` now, or ``None``."""
        now = self.clock.now()
        if self.freeze is not None and self.freeze.active(now):
            return "freeze", self.freeze.text()
        if wave.number in self._bypassed_windows:
            return None
        shut: Closed | None = closed(self.estate.windows, wave.channel.name, utc(now))
        if shut is None:
            return None
        return "window", f"wave {wave.number} ({wave.name}) held: {shut.text(utc(now))}"

    async def _hold(self, wave: Wave) -> None:
        """Wait while the estate is frozen or the wave's windows are closed."""
        while (blocker := self._blocker(wave)) is not None:
            kind, why = blocker
            if kind == "window" and self.options.window_bypass:
                self._bypass_window(wave, self.options.window_bypass, self.actor)
                continue
            if not (self.options.interactive or self.options.wait):
                self.current_wave = wave.number
                self._set_phase("held", wave.number, why)
                advice = (
                    "`sluice unfreeze` lifts it"
                    if kind == "freeze"
                    else "resume then, `--wait` for it, or `--bypass-window REASON`"
                )
                raise Finish(RolloutOutcome.STOPPED, f"{why}; {advice}")
            self.current_wave = wave.number
            self._holding = kind
            self._set_phase("held", wave.number, why)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), RECHECK_SECONDS)
            except TimeoutError:
                pass
            finally:
                self._holding = None
        if self._phase == "held":
            self._set_phase("running", wave.number)

    def _bypass_window(self, wave: Wave, reason: str, actor: str) -> None:
        self._bypassed_windows.add(wave.number)
        self.bus.emit(
            OperatorAction,
            action="bypass_window",
            actor=actor,
            reason=reason,
            wave=wave.number,
        )

    def bypass_window(self, reason: str, actor: str | None = None) -> CommandResult | None:
        """Start the held wave outside its window (``None``: no wave is held by a window)."""
        if self._holding != "window" or self.current_wave is None:
            return None
        if not reason.strip():
            return CommandResult(False, "a bypass needs a reason")
        self._bypass_window(self.plan.waves[self.current_wave - 1], reason, actor or self.actor)
        self._wake.set()
        return CommandResult(True, f"wave {self.current_wave} starts outside its window")

    # ------------------------------------------------------------------ waiting for the operator

    async def _await_operator(self, wave: Wave, why: str, detail: str) -> str:
        """Wait at a gate or a halt for the operator's decision (headless: decide by policy)."""
        if why == "awaiting_approval":
            self._approvals = {}
            if not self.options.interactive and self.options.approve:
                self._approvals[self.actor] = "--approve"
                self.bus.emit(
                    OperatorAction,
                    action="approve",
                    actor=self.actor,
                    reason="--approve",
                    wave=wave.number,
                )
                if len(self._approvals) >= self.needed_approvals(wave):
                    return APPROVED
            if self.options.approve or self.needed_approvals(wave) > 1:
                detail = self._approval_text(wave, gate=True)
        if not self.options.interactive and not (why == "awaiting_approval" and self.options.wait):
            if why == "awaiting_approval":
                # Said before stopping: a pipeline's notifications tell someone to approve.
                self._set_phase("awaiting_approval", wave.number, detail)
                raise Finish(
                    RolloutOutcome.STOPPED,
                    f"wave {wave.number} ({wave.name}) passed its manual gate and awaits approval; "
                    "continue with `sluice resume --approve` or in the console",
                )
            if why == "unknown":
                raise Finish(
                    RolloutOutcome.STOPPED,
                    f"stopped at wave {wave.number} ({wave.name}): {detail.split(';')[0]}; check them, then "
                    "`sluice resume` re-applies them (or retry them in the console)",
                )
            raise Finish(
                RolloutOutcome.HALTED, f"halted at wave {wave.number} ({wave.name}): {detail}"
            )
        phase = "halted" if why in ("budget", "unknown") else why
        return await self._wait_decision(wave, why, phase, detail)

    async def _wait_decision(self, wave: Wave, why: str, phase: str, detail: str) -> str:
        self._waiting = why
        # Ready before the state change is announced: a listener may decide at once.
        decision = self._decision = asyncio.get_running_loop().create_future()
        self._set_phase(phase, wave.number, detail)
        try:
            return await decision
        finally:
            self._decision = None
            self._waiting = None
            self._set_phase("running", wave.number)
