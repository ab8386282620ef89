"""Replay: a recorded rollout's events, fed back with their original pacing (scaled).

Consumers (the console) publish what :meth:`ReplaySource.play` yields into an ordinary
:class:`~sluice.engine.rollout.events.EventBus`, so a replayed rollout is drawn by the same code as a live one.

Loading is cheap whatever the rollout's size: the rows are read once and each event is decoded
when it is first needed (playing decodes at the pace it plays; a seek decodes only what it skips
in one batch). Timestamps and kinds come from the rows, so seeking needs no decoding at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import overload

from sluice.engine.rollout.events import Event, WaveStarted
from sluice.engine.store.event_rows import EventRow, decode_event, decode_events, known_kind
from sluice.engine.store.history import History

#: A recorded pause longer than this (an operator away at a manual gate) replays as this long.
MAX_GAP_SECONDS = 30.0


class RecordedEvents(Sequence[Event]):
    """A rollout's recorded events as a read-only sequence, decoded on first access."""

    def __init__(self, rows: Sequence[EventRow]):
        # Rows of kinds this sluice cannot decode are dropped up front, so indexes stay dense.
        self._rows = [row for row in rows if known_kind(row[2])]
        self._events: list[Event | None] = [None] * len(self._rows)
        self.timestamps: list[float] = [row[1] for row in self._rows]
        self.kinds: list[str] = [row[2] for row in self._rows]

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> Event: ...

    @overload
    def __getitem__(self, index: slice) -> list[Event]: ...

    def __getitem__(self, index: int | slice) -> Event | list[Event]:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self._rows))
            if step == 1:
                self.decode(start, stop)
            return [self[i] for i in range(start, stop, step)]
        event = self._events[index]
        if event is None:
            event = decode_event(self._rows[index])
            assert event is not None  # undecodable rows were dropped in __init__
            self._events[index] = event
        return event

    def __iter__(self) -> Iterator[Event]:
        self.decode(0, len(self._rows))
        for event in self._events:
            assert event is not None
            yield event

    def decode(self, start: int, stop: int) -> None:
        """Decode ``[start, stop)`` in one batch (much faster than one event at a time)."""
        todo = [i for i in range(start, stop) if self._events[i] is None]
        if not todo:
            return
        for i, event in zip(todo, decode_events([self._rows[i] for i in todo]), strict=True):
            self._events[i] = event


class ReplaySource:
    """The events of rollout ``rollout_id`` and a cursor over them.

    ``play`` is an async iterator from the cursor on; while it runs, :meth:`pause`,
    :meth:`resume`, :attr:`speed` and the seeks take effect at the next event.
    """

    def __init__(self, history: History | None, rollout_id: int):
        """Reads the rollout's rows from ``history`` now (``None``: no events yet, see
        :meth:`load`)."""
        self.rollout_id = rollout_id
        self.events = RecordedEvents(history.event_rows(rollout_id) if history else [])
        self.position = 0
        self.speed = 10.0
        self._running = asyncio.Event()
        self._running.set()
        self._moved = False

    @classmethod
    def load(cls, path: Path | str, rollout_id: int) -> ReplaySource:
        """Read the rollout from the history at ``path`` on a connection of its own — safe in a
        worker thread, so a console can load a large recording without blocking its keys."""
        history = History.open(path, create=False, readonly=True)
        try:
            return cls(history, rollout_id)
        finally:
            history.close()

    @property
    def start(self) -> float:
        return self.events.timestamps[0] if self.events else 0.0

    @property
    def end(self) -> float:
        return self.events.timestamps[-1] if self.events else 0.0

    @property
    def duration(self) -> float:
        """Recorded seconds from the first event to the last."""
        return self.end - self.start

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def pause(self) -> None:
        """Stop yielding events (``play`` waits) until :meth:`resume`."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def wave_starts(self) -> dict[int, int]:
        """Wave number → index of its (first) ``WaveStarted`` event."""
        starts: dict[int, int] = {}
        for i, kind in enumerate(self.events.kinds):
            if kind == WaveStarted.kind:
                event = self.events[i]
                assert isinstance(event, WaveStarted)
                starts.setdefault(event.wave, i)
        return starts

    def seek_wave(self, wave: int) -> int:
        """Move the cursor to the start of ``wave`` (or the nearest recorded one before it)."""
        starts = self.wave_starts()
        candidates = [i for n, i in starts.items() if n <= wave]
        return self._seek(max(candidates) if candidates else 0)

    def seek_time(self, offset: float) -> int:
        """Move the cursor to the first event at or after ``offset`` seconds into the rollout."""
        target = self.start + offset
        stamps = self.events.timestamps
        return self._seek(next((i for i, ts in enumerate(stamps) if ts >= target), len(stamps)))

    def _seek(self, position: int) -> int:
        self.position = position
        self._moved = True
        return position

    def until_cursor(self) -> list[Event]:
        """Events before the cursor: replay them instantly to rebuild the screen after a seek."""
        return self.events[: self.position]

    async def play(
        self, speed: float | None = None, *, max_gap: float = MAX_GAP_SECONDS
    ) -> AsyncIterator[Event]:
        """Yield events from the cursor on, sleeping the recorded gaps divided by :attr:`speed`.

        Args:
            speed: replaces :attr:`speed` (10× by default); 0 plays without pauses.
            max_gap: a longer recorded gap (an operator away) is shortened to this.
        """
        if speed is not None:
            self.speed = speed
        self._moved = False
        previous: float | None = None
        stamps = self.events.timestamps
        while self.position < len(self.events):
            await self._running.wait()
            if self._moved:  # a seek during play: no gap to wait across the jump
                self._moved, previous = False, None
            ts = stamps[self.position]
            if previous is not None and self.speed > 0:
                gap = min(max(0.0, ts - previous), max_gap)
                if gap > 0:
                    await asyncio.sleep(gap / self.speed)
                    previous = ts  # waited: re-check pause and seeks, then yield at once
                    continue
            previous = ts
            event = self.events[self.position]
            self.position += 1
            yield event
