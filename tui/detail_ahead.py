"""A target's detail read ahead of ``enter``, while the tree's cursor rests on the target.

The detail screen reads history on its reader's thread (tens of milliseconds at 1,000 targets,
longer while a rollout streams) and shows the estate file's part until the read returns: two
frames, the second after the read. Read ahead, the detail opens with history's part at once, in
one frame. A read ahead is used only while it is as fresh as the open screen keeps its own
(it re-reads once a second while a rollout runs); older, the screen reads anew as before.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from sluice.engine.model.estate import Estate
from sluice.tui.estate_data import TargetDetail, target_detail
from sluice.tui.history_reader import HistoryReader

#: How old a read may be to be shown while a rollout runs (the open screen's refresh period).
LIVE_SECONDS = 1.0
#: ... and with none running: then only another rollout changes a target's history, and a
#: console sees another console's rollout live (it watches it).
IDLE_SECONDS = 30.0


@dataclass
class _Read:
    target: str
    rollout_id: int | None
    started: float
    task: asyncio.Future[TargetDetail]

    def of(self, target: str, rollout_id: int | None) -> bool:
        return (self.target, self.rollout_id) == (target, rollout_id)


class ReadAhead:
    """The newest read of one target's detail, on ``reader``'s thread.

    Args:
        estate: the estate whose targets are read.
        reader: the detail screen's reader (one thread, one connection).
        clock: seconds, for the reads' age.
    """

    def __init__(
        self,
        estate: Estate,
        reader: HistoryReader,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.estate = estate
        self.reader = reader
        self.clock = clock
        self._last: _Read | None = None
        #: reads started (tests and the bench read it)
        self.reads = 0

    def start(self, target: str, rollout_id: int | None, *, live: bool) -> None:
        """Read ``target``'s detail now, unless a fresh read of it is done or under way."""
        last = self._last
        under_way = last is not None and last.of(target, rollout_id) and not last.task.done()
        if under_way or self.fresh(target, rollout_id, live=live) is not None:
            return
        self._begin(target, rollout_id)

    def fresh(self, target: str, rollout_id: int | None, *, live: bool) -> TargetDetail | None:
        """The detail read ahead, if it is ``target``'s, read, and fresh enough to show."""
        last = self._last
        if last is None or not last.of(target, rollout_id) or not last.task.done():
            return None
        if last.task.cancelled() or last.task.exception() is not None:
            return None
        return last.task.result() if self._fresh_enough(last, live) else None

    async def read(self, target: str, rollout_id: int | None) -> TargetDetail:
        """A read of ``target``'s detail: the one under way for it, or a new one."""
        last = self._last
        if last is None or not last.of(target, rollout_id) or last.task.done():
            last = self._begin(target, rollout_id)
        return await asyncio.shield(last.task)

    def _begin(self, target: str, rollout_id: int | None) -> _Read:
        estate = self.estate
        task = asyncio.ensure_future(
            self.reader.read(lambda h: target_detail(estate, h, target, rollout_id))
        )
        # A read ahead nobody opens: its failure is only the next read's to say.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        self._last = _Read(target, rollout_id, self.clock(), task)
        self.reads += 1
        return self._last

    def _fresh_enough(self, read: _Read, live: bool) -> bool:
        return self.clock() - read.started <= (LIVE_SECONDS if live else IDLE_SECONDS)
