"""The estate screens' reads of history, on a thread and a connection of their own.

The target detail reads a target's ledger, last apply and measurements (and every rollout's
record, whose plan is JSON of every target): tens of milliseconds at 1,000 targets, which on the
UI loop would hold the key that opened the screen. Here they run on one worker thread (one at a
time: a connection is not shared between threads) over a read-only connection opened there, like
a watching console's; the screen shows at once and fills in when the read returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from sluice.engine.store.history import History

T = TypeVar("T")


class HistoryReader:
    """Runs ``read(history, *args)`` calls on a thread of its own, in order.

    Args:
        where: the estate's history (a file, or a PostgreSQL URL), opened read-only on first use.
    """

    def __init__(self, where: str | Path):
        self.where = where
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sluice-history-reader")
        self._history: History | None = None
        self._closed = False

    async def read(self, read: Callable[..., T], *args: object) -> T:
        """``read(history, *args)`` on the reader's thread; raises what it raises."""
        return await asyncio.wrap_future(self._pool.submit(self._call, read, args))

    def _call(self, read: Callable[..., T], args: tuple[object, ...]) -> T:
        if self._history is None:
            self._history = History.open(self.where, create=False, readonly=True)
        return read(self._history, *args)

    def close(self) -> None:
        """Close the connection (on the reader's thread, after any read under way); once."""
        if self._closed:
            return
        self._closed = True
        self._pool.submit(self._close)
        self._pool.shutdown(wait=False)

    def _close(self) -> None:
        if self._history is not None:
            self._history.close()
            self._history = None
