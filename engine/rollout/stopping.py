"""Applies being stopped (abort, timeout): which signal went when, and when SIGKILL follows.

Executors report each stop through :attr:`Job.on_stop <sluice.engine.executors.base.Job>`;
the rollout's :class:`Stops` keeps the latest per target until its apply ends, and the console
shows it, counting down each second: ``stopping eph-101: SIGINT sent 12 s ago, SIGKILL in
4m48s``. Real seconds (``time.monotonic``): a stop grace is real time whatever the time scale.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from sluice.engine.model.units import format_duration


@dataclass(frozen=True)
class Stopping:
    target: str
    signal: str  # "SIGTERM", "SIGINT", … or "SIGKILL"
    since: float  # time.monotonic() when it was sent
    grace: float  # seconds from ``since`` until SIGKILL (0 for SIGKILL itself)

    def describe(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        ago = _seconds(max(0.0, now - self.since))
        if self.signal == "SIGKILL":
            return f"stopping {self.target}: SIGKILL sent {ago} ago"
        left = self.since + self.grace - now
        until = format_duration(math.ceil(left)) if left > 0 else "0s"
        return f"stopping {self.target}: {self.signal} sent {ago} ago, SIGKILL in {until}"


class Stops:
    """The applies of one rollout being stopped now, by target."""

    def __init__(self) -> None:
        self._by_target: dict[str, Stopping] = {}

    def noter(self, target: str) -> Callable[[str, float], None]:
        """The ``Job.on_stop`` of ``target``'s apply."""

        def note(signal_name: str, grace: float) -> None:
            self._by_target[target] = Stopping(target, signal_name, time.monotonic(), grace)

        return note

    def ended(self, target: str) -> None:
        """``target``'s apply has ended: no longer stopping."""
        self._by_target.pop(target, None)

    def now(self) -> list[Stopping]:
        """Every apply stopping now, the oldest stop first."""
        return sorted(self._by_target.values(), key=lambda s: s.since)

    def line(self, most: int = 2) -> str:
        """One status line for them all ("" when none)."""
        stops = self.now()
        shown = "; ".join(s.describe() for s in stops[:most])
        more = f"; and {len(stops) - most} more stopping" if len(stops) > most else ""
        return shown + more


def _seconds(value: float) -> str:
    return f"{int(value)} s" if value < 60 else format_duration(value)
