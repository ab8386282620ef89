"""The applies' starts and finishes a recorder commits together: every one queued in one turn of
the event loop is written in one transaction at the loop's next turn (a wave's applies start at
nearly the same moment, and on PostgreSQL a commit is a round trip). Its future tells the
applies waiting for them (``JobRunner``) whether they were committed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from sluice.engine.rollout.events import Event
from sluice.engine.store.changes import LEDGER_SQL, Change


class Group:
    """What is queued now; ``commit`` (the recorder's flush) is called at the loop's next turn,
    unless something committed the group before (a full batch, a durable event)."""

    def __init__(self, commit: Callable[[], object]):
        self._commit = commit
        #: The queued events' statements, in order, and the events.
        self.changes: list[Change] = []
        self.events: list[Event] = []
        #: Resolved when they are committed (True) or never will be (False); None: none queued.
        self.future: asyncio.Future[bool] | None = None

    def queue(self, event: Event, statements: list[Change]) -> bool:
        """Queue ``event`` with its ``statements`` (False: no loop runs; commit it at once)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        self.changes.extend(statements)
        self.events.append(event)
        if self.future is None:
            self.future = loop.create_future()
            loop.call_soon(self._due, self.future)
        return True

    def _due(self, future: asyncio.Future[bool]) -> None:
        if future is self.future:
            self._commit()

    def settle(self, committed: bool) -> list[Event]:
        """The queued events were committed (or never will be): empty the group, tell the
        waiters; the events."""
        future, events = self.future, self.events
        self.future, self.events, self.changes = None, [], []
        if future is not None and not future.done():
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits
                future.set_result(committed)
        return events


def runs(changes: list[Change]) -> list[tuple[str, list[list[Any]]]]:
    """``changes`` as runs of one statement each (written with one ``executemany``): the
    applies' statements in their order (a finish's update before the next start of its target),
    then the ledger entries in theirs — a table of their own, so they may go last."""
    applies = [change for change in changes if change[0] is not LEDGER_SQL]
    ledger = [change for change in changes if change[0] is LEDGER_SQL]
    merged: list[tuple[str, list[list[Any]]]] = []
    for sql, params in applies + ledger:
        if merged and merged[-1][0] is sql:
            merged[-1][1].append(params)
        else:
            merged.append((sql, [params]))
    return merged
