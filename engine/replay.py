"""Replay: a recorded rollout's events, fed back with their original pacing (scaled).

Consumers (the console) publish what :meth:`ReplaySource.play` yields into an ordinary
:class:`~engine.events.EventBus`, so a replayed rollout is drawn by the same code as a live one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from engine.events import Event, WaveStarted
from engine.history import History

#: A recorded pause longer than this (an operator away at a manual gate) replays as this long.
MAX_GAP_SECONDS = 30.0


class ReplaySource:
    """The events of rollout ``rollout_id`` and a cursor over them."""

    def __init__(self, history: History, rollout_id: int):
        self.rollout_id = rollout_id
        self.events: list[Event] = history.events(rollout_id)
        self.position = 0

    @property
    def start(self) -> float:
        return self.events[0].ts if self.events else 0.0

    @property
    def end(self) -> float:
        return self.events[-1].ts if self.events else 0.0

    def wave_starts(self) -> dict[int, int]:
        """Wave number → index of its ``WaveStarted`` event."""
        return {e.wave: i for i, e in enumerate(self.events) if isinstance(e, WaveStarted)}

    def seek_wave(self, wave: int) -> int:
        """Move the cursor to the start of ``wave`` (or the nearest recorded one before it)."""
        starts = self.wave_starts()
        candidates = [i for n, i in starts.items() if n <= wave]
        self.position = max(candidates) if candidates else 0
        return self.position

    def seek_time(self, offset: float) -> int:
        """Move the cursor to the first event at or after ``offset`` seconds into the rollout."""
        target = self.start + offset
        self.position = next(
            (i for i, e in enumerate(self.events) if e.ts >= target), len(self.events)
        )
        return self.position

    def until_cursor(self) -> list[Event]:
        """Events before the cursor: replay them instantly to rebuild the screen after a seek."""
        return self.events[: self.position]

    async def play(
        self, speed: float = 10.0, *, max_gap: float = MAX_GAP_SECONDS
    ) -> AsyncIterator[Event]:
        """Yield events from the cursor on, sleeping the recorded gaps divided by ``speed``."""
        previous: float | None = None
        while self.position < len(self.events):
            event = self.events[self.position]
            if previous is not None and speed > 0:
                gap = min(max(0.0, event.ts - previous), max_gap)
                if gap > 0:
                    await asyncio.sleep(gap / speed)
            previous = event.ts
            self.position += 1
            yield event
