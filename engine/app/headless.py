"""Headless runs: drive a rollout without the console, printing progress or NDJSON events.

The printers it is given are in :mod:`sluice.engine.app.printers` (the console's event log words
its lines with them too, without importing this runner).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from sluice.engine.rollout.events import Event
from sluice.engine.rollout.orchestrator import Rollout
from sluice.engine.rollout.state import Outcome


async def run_headless(
    rollout: Rollout,
    printer: Callable[[Event], Any],
    runner: Callable[[Rollout], Awaitable[Outcome]] | None = None,
    interrupt: Callable[[str], None] | None = None,
) -> Outcome:
    """Run ``rollout`` to its end; SIGINT and SIGTERM abort it cleanly (exit 3).

    A signal that comes once the rollout has ended — while ``runner`` waits for webhooks to be
    delivered — goes to ``interrupt`` (e.g. :meth:`Session.interrupt`): delivery stops at once,
    and the exit code stays the rollout's.
    """
    rollout.bus.listen(printer)
    loop = asyncio.get_running_loop()

    def received(sig: signal.Signals) -> None:
        reason = f"{sig.name} received"
        if rollout.abort(reason).ok or interrupt is None:
            return
        interrupt(reason)  # the rollout has ended or is already stopping: do not wait on webhooks

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, received, sig)
    try:
        return await (runner(rollout) if runner else rollout.run())
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
