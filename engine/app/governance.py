"""Governance at the application layer: operator requests from other terminals, and freezes.

The process that drives a rollout (console or headless) runs a :class:`RequestPump` beside it: a
few times a second it reads the estate's freeze and pending requests from history, carries each
request out on the rollout, exactly as a key press would, and writes the answer back. The
``sluice approve|pause|unpause|abort`` side is :func:`send_request`; ``sluice freeze`` and
``unfreeze`` write history directly (a freeze needs no driver: the next one honours it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from dataclasses import dataclass

from sluice.engine.rollout.events import Notice
from sluice.engine.rollout.governance import Freeze
from sluice.engine.rollout.jobs import current_user
from sluice.engine.rollout.orchestrator import Rollout
from sluice.engine.rollout.state import CommandResult
from sluice.engine.store import requests as store
from sluice.engine.store.history import History

#: How often the driver looks for requests and freezes (real seconds).
POLL_SECONDS = 0.2
#: How long ``sluice approve`` waits for the driver to answer before giving up.
ANSWER_TIMEOUT = 10.0
#: A lease without a heartbeat for this long has no driver to answer (see session.LEASE_TIMEOUT).
STALE_LEASE = 30.0


def actor() -> str:
    """The acting person: ``SLUICE_ACTOR``, or ``user@host``."""
    return os.environ.get("SLUICE_ACTOR") or f"{current_user()}@{socket.gethostname()}"


def freeze_of(history: History, estate: str) -> Freeze | None:
    row = store.active_freeze(history, estate)
    return None if row is None else Freeze(row.actor, row.reason, row.ts, row.until)


class RequestPump:
    """Carries out requests recorded in ``history`` on ``rollout`` and keeps its freeze current."""

    def __init__(self, history: History, rollout: Rollout, holder: str):
        self.history = history
        self.rollout = rollout
        self.holder = holder

    async def run(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # a busy database: the next poll tries again
                self.poll()
            await asyncio.sleep(POLL_SECONDS)

    def poll(self) -> None:
        estate = self.rollout.estate.name
        self.rollout.set_freeze(freeze_of(self.history, estate))
        if self.rollout.outcome is not None:
            return  # finished: the requester hears "no rollout is running" when it gives up
        for req in store.pending_requests(self.history, estate):
            if req.ts < time.time() - ANSWER_TIMEOUT:
                # Its requester gave up (or died before it could say so): never act on it now.
                store.expire_request(self.history, req.id, "stale: its requester stopped waiting")
                continue
            if not store.claim_request(self.history, req.id, self.holder):
                continue
            result = self.carry_out(req)
            store.answer_request(
                self.history,
                req.id,
                ok=result.ok,
                result=result.message,
                rollout_id=self.rollout.rollout_id,
            )
            what = req.action + (f" wave {req.wave}" if req.wave is not None else "")
            self.rollout.bus.emit(
                Notice,
                level="info" if result.ok else "warning",
                message=f"request from {req.actor}: {what} — "
                + (result.message if result.ok else f"refused: {result.message}"),
            )

    def carry_out(self, req: store.Request) -> CommandResult:
        r = self.rollout
        if req.action == "approve":
            return r.approve_wave(req.reason, req.actor, req.wave)
        if req.wave is not None and req.wave != r.current_wave:
            return CommandResult(
                False, f"wave {req.wave} is not the current wave ({r.current_wave})"
            )
        if req.action == "pause":
            return r.pause(req.reason, req.actor)
        if req.action == "unpause":
            return r.resume(req.reason, req.actor)
        if req.action == "abort":
            return r.abort(req.reason, req.actor)
        return CommandResult(False, f"unknown request {req.action!r}")


@dataclass(frozen=True)
class Answer:
    """What became of a request: ``status`` done, refused, or none (no rollout running)."""

    status: str
    message: str


def send_request(
    history: History,
    estate: str,
    action: str,
    *,
    wave: int | None = None,
    reason: str = "",
    timeout: float = ANSWER_TIMEOUT,
) -> Answer:
    """Record a request and wait for the driving process to answer it."""
    if not running_rollout(history, estate):
        return Answer("none", f"no rollout is running on estate {estate!r}")
    req_id = store.add_request(
        history,
        estate=estate,
        actor=actor(),
        host=socket.gethostname(),
        action=action,
        wave=wave,
        reason=reason,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = store.request(history, req_id)
        if row is not None and row.status in ("done", "refused"):
            return Answer(row.status, row.result or "")
        time.sleep(0.05)
    if store.expire_request(history, req_id, f"no answer within {timeout:g}s"):
        return Answer("none", f"no driver answered within {timeout:g}s: no rollout is running")
    # Claimed at the last moment: the answer follows at once.
    for _ in range(100):
        row = store.request(history, req_id)
        if row is not None and row.status in ("done", "refused"):
            return Answer(row.status, row.result or "")
        time.sleep(0.05)
    return Answer("none", "the driver claimed the request but did not answer")


def running_rollout(history: History, estate: str) -> bool:
    """A live process holds the estate's lease and a rollout of it is recorded as running."""
    if store.driver_alive(history, estate, STALE_LEASE) is None:
        return False
    return any(r.outcome == "running" and r.estate == estate for r in history.unfinished())
