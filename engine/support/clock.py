"""Engine time: every timer goes through a :class:`Clock` so ``--time-scale`` can scale it."""

from __future__ import annotations

import asyncio
import time


class Clock:
    """Scales engine timers: ``scale=0.01`` runs 100× faster, ``0`` as fast as possible."""

    def __init__(self, scale: float = 1.0):
        if scale < 0:
            raise ValueError("time scale must be ≥ 0")
        self.scale = scale

    def scaled(self, seconds: float) -> float:
        return max(0.0, seconds * self.scale)

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of estate time (``seconds * scale`` of real time)."""
        await asyncio.sleep(self.scaled(seconds))

    @staticmethod
    def now() -> float:
        return time.time()

    @staticmethod
    def monotonic() -> float:
        return time.monotonic()
