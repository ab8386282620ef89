"""A watching console's feed: the driving console's rollout, followed through the shared history.

A :class:`~sluice.engine.store.follow.Follower` waits and reads in a thread of its own, on a
connection of its own (PostgreSQL: woken by the driver's commit; a file: polled), and hands each
batch over to the console's loop without waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sluice.engine.rollout.events import Event, EventBus
from sluice.engine.store.follow import Follower


def follow_history(
    where: str | Path, bus: EventBus, poll: float
) -> tuple[Follower, asyncio.Future[None]]:
    """Follow the history at ``where`` (read-only), publishing its new events on ``bus`` on this
    loop; the future ends when the follower does (with its error, if it failed)."""
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()

    def publish(events: list[Event]) -> None:
        for event in events:
            bus.publish(event)

    def done(error: BaseException | None) -> None:
        def end() -> None:
            if ended.done():
                return
            if error is not None:
                ended.set_exception(error)
            else:
                ended.set_result(None)

        hand_over(end)

    def hand_over(callback: Callable[..., object], *args: Any) -> None:
        """From the follower's thread to this loop (gone once the console has closed)."""
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(callback, *args)

    follower = Follower(where, lambda events: hand_over(publish, events), poll=poll, done=done)
    follower.start()
    return follower, ended
