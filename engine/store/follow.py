"""Following a rollout driven elsewhere, from a thread of its own (a watching console).

A :class:`Follower` opens the history read-only on its own connection and, in its own thread, reads
the running rollout's new events and hands them to ``deliver`` — at once when a writer commits
(PostgreSQL: it ``LISTEN``s for the driver's ``NOTIFY``), every ``poll`` seconds otherwise (a SQLite
file cannot tell: it is polled, as before). Waiting and reading never wait for the caller's event
loop: a console busy painting still has the new events handed over the moment they commit, and
folds them in as soon as it is free.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sluice.engine.rollout.events import Event
from sluice.engine.store.history import History


def read_new(
    history: History, watched: int | None, seen: int
) -> tuple[int | None, int, list[Event]]:
    """The running rollout (the newest unfinished one), and its events after ``seen`` (all of
    them when it is a new one)."""
    running = [r for r in history.unfinished() if r.kind == "rollout"]
    if running and running[0].id != watched:
        watched, seen = running[0].id, 0
    return watched, seen, history.events(watched, after=seen) if watched is not None else []


class Follower:
    """Reads ``where``'s running rollout in a thread; ``deliver(events)`` is called there, in
    order, with each batch of new events. :meth:`stop` ends it (within one ``poll``)."""

    def __init__(
        self,
        where: Path | str,
        deliver: Callable[[list[Event]], object],
        *,
        poll: float = 1.0,
        done: Callable[[BaseException | None], None] | None = None,
    ):
        self.where = where
        self.deliver = deliver
        self.poll = poll
        self.done = done
        #: Batches handed to ``deliver`` so far (and how the follower was woken before each read).
        self.batches = 0
        self.woken_by_commit = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sluice-follow", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        error: BaseException | None = None
        try:
            reader = History.open(self.where, create=False, readonly=True)
        except BaseException as exc:  # told to the caller (a console shows it)
            error = exc
        else:
            try:
                self._follow(reader)
            finally:
                reader.close()
        if self.done is not None:
            self.done(error)

    def _follow(self, reader: History) -> None:
        listener: Any = None
        watched, seen = None, 0  # seen: the last seq read, so each read takes only what is new
        while not self._stop.is_set():
            if listener is None and reader.db.kind == "postgresql":
                listener = _listen(reader)  # first: no commit after the read below is missed
            try:
                watched, seen, events = read_new(reader, watched, seen)
            except Exception:  # a server restarting: read again after the next wait
                events = []
                with contextlib.suppress(Exception):
                    reader.db.reconnect(0)
            if events:
                seen = events[-1].seq
                self.batches += 1
                self.deliver(events)
            if listener is None:
                self._stop.wait(self.poll)  # a file (or no listener yet): poll
                continue
            try:
                if listener.wait(self.poll):
                    self.woken_by_commit += 1
            except Exception:  # the connection broke: listen again, read anyway
                with contextlib.suppress(Exception):
                    listener.close()
                listener = None
        if listener is not None:
            with contextlib.suppress(Exception):
                listener.close()


def _listen(reader: History) -> Any:
    try:
        return reader.db.listen()  # type: ignore[attr-defined]
    except Exception:  # the server is away: poll until it is back
        return None
