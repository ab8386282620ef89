"""Records a rollout's event stream into the history, in batches, durable where it matters.

The recorder is a synchronous bus listener. Most events are buffered and written in one
transaction per batch (on a short timer, or when the buffer fills) — off the hot path. The events
the engine relies on are durable before the engine acts on them — an apply's start (before its
executor launches anything) and its finish (its ``applies`` row and, when it succeeded, its ledger
entry), wave starts and ends, gate verdicts, operator actions, the end of the rollout: that is
what makes resume after ``kill -9`` safe.

On a file (SQLite) each of them is committed at once, in the listener call; an apply's start and
finish are small commits of their own (a commit writes every page it touches), their event rows
following with the batch. On PostgreSQL a commit is a round trip, so commits are shared
(:attr:`~sluice.engine.store.backend.Database.group_commit`): a durable event commits everything
buffered before it, in one transaction, and an apply's start or finish — inside a running event
loop — is not committed in the listener call but queued, and every start and finish queued in one
turn of the loop (a wave's applies start together) is committed in **one** fenced transaction at
the loop's next turn. The :class:`~sluice.engine.rollout.jobs.JobRunner` awaits
:meth:`Recorder.recorded` after emitting them: an apply is launched only once its start is durable,
and it is over only once its finish is. A kill loses at most the last moment's batched events
(output lines, samples) and the finishes not yet durable (applies left "started", as a kill just
before a finish's own commit left them: resume looks for them) — never a launched apply's start.

A check sample — most of a rollout's events — is one ``samples`` row, its fields in columns (no
JSON). Every other event is an ``event_log`` row that keeps ``seq``, ``ts`` and ``kind`` in columns
and the other fields as compact JSON in ``data`` (:mod:`.encoding`; readers merge the two:
:meth:`sluice.engine.store.history.History.event_rows`). No write reads a result back (an apply's
finish finds its row by target), so on PostgreSQL a commit is one round trip (three when it has
rows enough to ``COPY``: :meth:`~sluice.engine.store.backend.Database.append`).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from typing import Any

from sluice.engine.rollout.events import (
    ApplyAdopted,
    ApplyFinished,
    ApplyOutput,
    ApplyStarted,
    Event,
    GateEvaluated,
    OperatorAction,
    RolloutFinished,
    SampleTaken,
    WaveFinished,
    WaveStarted,
)
from sluice.engine.store.backend import ConnectionLost
from sluice.engine.store.changes import changes
from sluice.engine.store.encoding import (
    EVENT_SQL,
    PAYLOADS,
    SAMPLE_SQL,
    appender,
    encode,
    exact,
    payload_of,
)
from sluice.engine.store.group_commit import Group, runs
from sluice.engine.store.history import History
from sluice.engine.store.lease import LEASE_TIMEOUT, LeaseLost
from sluice.engine.store.write_failure import WRITE_ERRORS, HistoryIdentity, describe

#: Events written the moment they happen (the rest wait for the next batch).
DURABLE = (
    ApplyStarted,
    ApplyAdopted,
    ApplyFinished,
    OperatorAction,
    GateEvaluated,
    WaveStarted,
    WaveFinished,
    RolloutFinished,
)
_DURABLE = frozenset(DURABLE)
#: What resume relies on: not recorded at all by a process that lost the lease.
_APPLY_TYPES = frozenset((ApplyStarted, ApplyAdopted, ApplyFinished))
#: Committed together, one transaction per turn of the event loop (on a group-commit backend).
_GROUPED = frozenset((ApplyStarted, ApplyFinished))
BATCH_SIZE = 2000
TAIL_LINES = 20
#: A launch right after a fenced commit that began at most this long ago (by a clock that counts
#: a stopped process and a suspended machine) is covered by that commit's lease check: a takeover
#: needs the holder silent for the lease timeout (30 s), and the launch itself follows its check
#: by as long anyway (a process spawned, an SSH channel opened).
FENCE_FRESH = 0.1


#: Seconds by a clock that runs while this process is stopped and while the machine sleeps
#: (Linux: ``CLOCK_BOOTTIME``); None where there is none: then every launch checks the lease.
_BOOTTIME: int | None = getattr(time, "CLOCK_BOOTTIME", None)


def _boottime() -> float:
    assert _BOOTTIME is not None
    return time.clock_gettime(_BOOTTIME)


_since_boot: Callable[[], float] | None = None if _BOOTTIME is None else _boottime


class Recorder:
    """Subscribe with ``bus.listen(recorder)``; call :meth:`flush` at the end.

    A write that fails (disk full, a read-only or deleted file) never raises into the emitter —
    an apply's output must not fail its target: the recorder stops writing, keeps
    :attr:`failure` (why) and tells ``on_failure`` once, which stops the rollout (see
    :mod:`sluice.engine.app.history_guard`). What was committed before stays committed.
    """

    def __init__(
        self,
        history: History,
        rollout_id: int,
        module: str,
        on_failure: Callable[[str], None] | None = None,
    ):
        self.history = history
        self.rollout_id = rollout_id
        self.module = module
        self.on_failure = on_failure
        #: Why the history could not be written (then nothing more is written), or None.
        self.failure: str | None = None
        #: Targets whose apply is recorded as started and not (yet) as finished.
        self.unfinished: dict[str, None] = {}
        self._identity = HistoryIdentity(history.path)
        self._events: list[tuple[Any, ...]] = []
        self._samples: list[tuple[Any, ...]] = []
        self._tails: dict[str, deque[str]] = defaultdict(lambda: deque(maxlen=TAIL_LINES))
        self._timer: asyncio.TimerHandle | None = None
        #: The queued applies' starts and finishes (group commit): their statements, in order,
        #: the events, and the future their commit resolves (True: committed).
        self._group = Group(self.flush)
        #: When the last fenced commit began (:data:`FENCE_FRESH`), by ``_since_boot``.
        self._confirmed: float | None = None
        #: Why this process may no longer write (it lost the lease), or None.
        self.lost: str | None = None
        #: Called once when a write finds the lease lost (the session stops the rollout).
        self.on_lost: Callable[[LeaseLost], None] | None = None
        #: Told when the connection to the history broke, and when it is back.
        self.on_connection: Callable[[str], None] | None = None

    def __call__(self, event: Event) -> None:
        if self.failure is not None:
            return
        cls = type(event)
        if isinstance(event, SampleTaken):
            stored = (
                cls is SampleTaken  # decoded back as exactly this class
                and exact(event.value)
                and exact(event.baseline)
                and type(event.wave) is int
            )
            self._samples.append(
                (
                    self.rollout_id,
                    event.seq if stored else None,  # None: the JSON event row is the stream's
                    event.wave,
                    event.check,
                    event.target,
                    event.phase,
                    event.ts,
                    event.value,
                    event.baseline,
                    event.outcome,
                    event.reason,
                )
            )
            if stored:
                self._later()
                return
        payload = PAYLOADS.get(cls) or payload_of(cls)
        self._events.append(
            (self.rollout_id, event.seq, event.ts, event.kind, encode(payload(event)))
        )
        if isinstance(event, ApplyOutput):
            self._tails[event.target].append(f"{event.stream}: {event.line}")
        elif cls in _DURABLE:
            self._durable(event)
            return
        self._later()

    def _durable(self, event: Event) -> None:
        """Make ``event`` durable: queued for this turn's group commit, or committed at once
        with everything buffered before it."""
        if self.lost is not None and type(event) in _APPLY_TYPES:
            # An apply this process may no longer drive (it lost the lease) is not recorded —
            # and so, raising LeaseLost out of the emit, never launched.
            if isinstance(event, ApplyStarted):
                raise LeaseLost(self.lost)
            return
        if self.history.db.group_commit:
            if type(event) in _GROUPED and self._queue(event):
                return
            committed = self.flush(event)
        else:  # a file: the apply's own rows alone (a small commit), its event row with the batch
            if type(event) not in _APPLY_TYPES:
                committed = self.flush(event)
            else:
                if self._samples and isinstance(event, ApplyStarted):
                    self.flush()  # the wave's baselines: durable before its first apply starts
                committed = self.flush(event, rows=False)
        if not committed:
            if isinstance(event, ApplyStarted) and self.lost is not None:
                raise LeaseLost(self.lost)
            return
        self._committed(event)

    def _committed(self, event: Event, *, tail: bool = True) -> None:
        if isinstance(event, ApplyStarted):
            self.unfinished[event.target] = None
        elif isinstance(event, ApplyFinished):
            self.unfinished.pop(event.target, None)
        if tail and isinstance(event, ApplyStarted | ApplyAdopted | ApplyFinished):
            self._tails.pop(event.target, None)  # only once committed: a retry writes it again

    def _queue(self, event: Event) -> bool:
        """Queue an apply's start or finish for the group commit at the loop's next turn
        (False: no loop runs; it is committed at once). Its statements are built now, with the
        output tail as it is now: a retried commit writes the same, and output of the target's
        next apply is not mixed in."""
        target = getattr(event, "target", "")
        statements = changes(event, self.rollout_id, self.module, self._tails.get(target, ()))
        if not self._group.queue(event, statements):
            return False
        self._tails.pop(target, None)
        return True

    def recorded(self, start: bool) -> Awaitable[bool] | None:
        """What to await after emitting an apply's start (``start``) or finish: the group commit
        that makes it durable, and whether it did (None: it already is, or could not be — see
        :attr:`failure`). After a start, raises :class:`LeaseLost` if the process may no longer
        launch it."""
        future = self._group.future
        if future is None:
            return self._lost() if start and self.lost is not None else None
        return self._settled(future, start)

    async def _lost(self) -> bool:
        raise LeaseLost(self.lost or "")

    async def _settled(self, group: asyncio.Future[bool], start: bool) -> bool:
        committed = await asyncio.shield(group)  # a waiter cancelled (an abort) cancels no other's
        if start and self.lost is not None:
            raise LeaseLost(self.lost)
        return committed

    def _settle(self, committed: bool) -> None:
        """The queued starts and finishes were committed (or never will be)."""
        for event in self._group.settle(committed):
            if committed:
                self._committed(event, tail=False)  # its tail was taken when it was queued

    def _later(self) -> None:
        """A buffered row was added: write the batch when it is full, or on the timer."""
        if len(self._events) + len(self._samples) >= BATCH_SIZE:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
            else:
                self._timer = loop.call_later(self.history.db.flush_seconds, self.flush)

    def _fail(self, why: str) -> None:
        if self.failure is not None:
            return
        self.failure = why
        self._events.clear()
        self._samples.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.on_failure is not None:
            self.on_failure(why)
        self._settle(False)

    def flush(self, event: Event | None = None, *, rows: bool = True) -> bool:
        """Write the buffered rows (not with ``rows=False``), the queued starts and finishes, and
        what ``event`` changes, in one transaction; whether it was committed."""
        if self._timer is not None and rows:
            self._timer.cancel()
            self._timer = None
        if self.failure is not None:
            return False
        if self.lost is not None:  # nothing more is written by a process that lost the lease
            self._events.clear()
            self._samples.clear()
            self._settle(False)
            return False
        gone = self._identity.gone()
        if gone is not None:
            self._fail(gone)
            return False
        db = self.history.db
        events, samples = (self._events, self._samples) if rows else ([], [])
        queued = self._group.changes

        attempts = 0

        def batch() -> None:
            nonlocal attempts
            attempts += 1
            # Retried (a connection lost at its commit may have committed it): rows already
            # there are skipped, which the fast first way (PostgreSQL's COPY) cannot do.
            write = db.executemany if attempts > 1 else appender(db)
            if events:
                write(EVENT_SQL, events)
            if samples:
                write(SAMPLE_SQL, samples)
            for sql, rows in runs(queued):
                db.executemany(sql, rows)
            if event is not None:
                self._apply(event)

        try:
            self._write(batch)
        except LeaseLost as exc:
            self._lose(exc)
            return False
        except WRITE_ERRORS as exc:
            self._fail(describe(exc, self.history.path))
            return False
        if rows:  # only once committed: a retried batch keeps them
            self._events, self._samples = [], []
        self._settle(True)
        return True

    def _write(self, body: Callable[[], None]) -> None:
        """Run ``body`` in one fenced write transaction. A connection that broke (a database
        server restarted) is reconnected with backoff and the transaction run again — meanwhile
        nothing else happens, so no apply starts unrecorded. A history unreachable for the lease
        timeout cannot vouch for the lease any more: :class:`LeaseLost`."""
        while True:
            began = _since_boot() if _since_boot is not None else None
            try:
                with self.history.writing():
                    body()
                if self.history.fence is not None:
                    self._confirmed = began
                return
            except ConnectionLost as exc:
                if self.on_connection is not None:
                    self.on_connection(f"{exc}: reconnecting; no apply starts meanwhile")
                if not self.history.db.reconnect(LEASE_TIMEOUT):
                    raise LeaseLost(
                        f"{exc}; the history stayed unreachable for {LEASE_TIMEOUT:.0f}s, so this "
                        "process cannot hold the lease"
                    ) from None
                if self.on_connection is not None:
                    self.on_connection(f"reconnected to {self.history.path}")

    def may_launch(self) -> None:
        """Right before an executor starts an apply (after its start committed, and after every
        wait since): raise :class:`LeaseLost` unless this process still holds the lease. The
        start's own commit was fenced, but a process stopped after it (SIGSTOP, a suspended
        laptop) — during an orphan scan, a plan, a connection — may have been taken over
        meanwhile, and the new driver re-runs that apply: it must not be launched twice.

        With group commit (PostgreSQL), a fenced commit that began at most :data:`FENCE_FRESH`
        ago — by a clock that runs while the process is stopped or the machine sleeps — is that
        check: the wave's applies launched right after their shared start commit are covered by
        its fence, not one round trip each."""
        if self.lost is None and self.failure is None and self.history.fence is not None:
            if self._fresh():
                return
            try:
                self._write(lambda: None)  # a fenced, empty transaction
            except LeaseLost as exc:
                self._lose(exc)
            except WRITE_ERRORS as exc:  # the start is recorded: in flight, waited for
                self._fail(describe(exc, self.history.path))
        if self.lost is not None:
            raise LeaseLost(self.lost)

    def _fresh(self) -> bool:
        """Whether the lease was confirmed by a fenced commit that began under
        :data:`FENCE_FRESH` ago (only with group commit; a file checks at every launch)."""
        if not self.history.db.group_commit or _since_boot is None or self._confirmed is None:
            return False
        return _since_boot() - self._confirmed < FENCE_FRESH

    def _lose(self, exc: LeaseLost) -> None:
        """The lease is gone: drop what is buffered, write nothing more, tell the session."""
        self.lost = str(exc)
        self._events.clear()
        self._samples.clear()
        self._settle(False)
        if self.on_lost is not None:
            self.on_lost(exc)

    def _apply(self, event: Event) -> None:
        """Inside the write transaction: what ``event`` changes besides its own event row."""
        tail = self._tails.get(getattr(event, "target", ""), ())
        for sql, params in changes(event, self.rollout_id, self.module, tail):
            self.history.db.execute(sql, params)
