"""Engine time: every timer goes through a :class:`Clock` so ``--time-scale`` can scale it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class Clock:
    """Scales engine timers: ``scale=0.01`` runs 100× faster, ``0`` as fast as possible.

    ``wall`` replaces the wall clock :meth:`now` reads (tests put a change window's "now" on
    either side of a daylight-saving change with it); timers still run on real time.
    """

    def __init__(self, scale: float = 1.0, wall: Callable[[], float] | None = None):
        if scale < 0:
            raise ValueError("time scale must be ≥ 0")
        self.scale = scale
        self._wall = wall or time.time

    def scaled(self, seconds: float) -> float:
        return max(0.0, seconds * self.scale)

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of estate time (``seconds * scale`` of real time)."""
        await asyncio.sleep(self.scaled(seconds))

    def now(self) -> float:
        """Wall-clock time (seconds since the epoch), as change windows and queries see it."""
        return self._wall()

    @staticmethod
    def monotonic() -> float:
        return time.monotonic()
