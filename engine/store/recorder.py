"""Records a rollout's event stream into the history, in batches, durable where it matters.

The recorder is a synchronous bus listener. Most events are buffered and written in one
transaction per batch (on a short timer, or when the buffer fills) — off the hot path. The events
the engine relies on are committed at once, in the listener call — an apply's start (before its
executor launches anything) and its finish (its ``applies`` row and, when it succeeded, its ledger
entry), wave starts and ends, gate verdicts, operator actions, the end of the rollout: that is
what makes resume after ``kill -9`` safe. On PostgreSQL each such commit is a *group commit*:
everything buffered before the event goes in the same transaction (a commit is a round trip: one,
not two), so the event's own row is durable — and seen by watchers — with it. On a file an apply's
start and finish are small commits of their own (a commit writes every page it touches), their
event rows following with the batch. A kill loses at most the last moment's batched events
(output lines, samples), never an apply's state.

A check sample — most of a rollout's events — is one ``samples`` row, its fields in columns (no
JSON). Every other event is an ``event_log`` row that keeps ``seq``, ``ts`` and ``kind`` in columns
and the other fields as compact JSON in ``data`` (readers merge the two:
:meth:`sluice.engine.store.history.History.event_rows`). Serialising is most of the recorder's cost, so the
field names of each event class are looked up once, not per event. No write reads a result back
(an apply's finish finds its row by target), so on PostgreSQL a commit is one round trip.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
from collections import defaultdict, deque
from collections.abc import Callable
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
BATCH_SIZE = 2000
TAIL_LINES = 20


def _make_encoder() -> Callable[[Any], str]:
    """A compact JSON encoder built once (``json.dumps`` builds one per call: half its cost).

    CPython's C encoder is reused directly when present: the same output as
    ``json.dumps(value, default=str, separators=(",", ":"))``.
    """
    try:
        from json.encoder import (  # type: ignore[attr-defined]
            c_make_encoder,
            encode_basestring_ascii,
        )
    except ImportError:  # pragma: no cover - not CPython
        c_make_encoder = None
    if c_make_encoder is None:  # pragma: no cover
        return json.JSONEncoder(default=str, separators=(",", ":")).encode
    # (markers, default, encode_str, indent, key_sep, item_sep, sort_keys, skipkeys, allow_nan);
    # no markers: events hold no cycles, and checking for them costs a dict per container.
    encoder = c_make_encoder(None, str, encode_basestring_ascii, None, ":", ",", False, False, True)
    join = "".join

    def encode(value: Any) -> str:
        return join(encoder(value, 0))

    return encode


_encode = _make_encoder()
_EVENT_SQL = (
    "INSERT INTO event_log (rollout_id, seq, ts, kind, data) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT DO NOTHING"
)
_SAMPLE_SQL = (
    "INSERT INTO samples (rollout_id, seq, wave, check_name, target, phase, ts, value, "
    "baseline, outcome, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)


def _exact(value: object) -> bool:
    """Whether a sample's ``value``/``baseline`` reads back from a REAL column unchanged.

    NaN would read back as NULL, an int as a float, and -0.0 as 0.0: such a sample (no check
    makes one today) is stored as JSON like any other event instead, with a samples row beside it.
    """
    if value is None:
        return True
    return (
        type(value) is float
        and math.isfinite(value)
        and (value != 0.0 or math.copysign(1.0, value) > 0)
    )


#: Event class → a function giving the fields stored in ``data`` (all but seq, ts and kind).
_PAYLOADS: dict[type[Event], Callable[[Event], dict[str, Any]]] = {}
_COLUMNS = ("seq", "ts", "kind")


def _payload_of(cls: type[Event]) -> Callable[[Event], dict[str, Any]]:
    getter = _PAYLOADS.get(cls)
    if getter is None:
        if cls.to_dict is not Event.to_dict:  # a class with its own to_dict: use it

            def getter(event: Event) -> dict[str, Any]:
                data = event.to_dict()
                return {k: v for k, v in data.items() if k not in _COLUMNS}

        else:
            names = tuple(f.name for f in dataclasses.fields(cls) if f.name not in _COLUMNS)

            def getter(event: Event) -> dict[str, Any]:
                return {name: getattr(event, name) for name in names}

        _PAYLOADS[cls] = getter
    return getter


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
                and _exact(event.value)
                and _exact(event.baseline)
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
        payload = _PAYLOADS.get(cls) or _payload_of(cls)
        self._events.append(
            (self.rollout_id, event.seq, event.ts, event.kind, _encode(payload(event)))
        )
        if isinstance(event, ApplyOutput):
            self._tails[event.target].append(f"{event.stream}: {event.line}")
        elif cls in _DURABLE:
            self._durable(event)
            return
        self._later()

    def _durable(self, event: Event) -> None:
        """Commit ``event`` at once, with everything buffered before it (one group commit)."""
        if self.lost is not None and type(event) in _APPLY_TYPES:
            # An apply this process may no longer drive (it lost the lease) is not recorded —
            # and so, raising LeaseLost out of the emit, never launched.
            if isinstance(event, ApplyStarted):
                raise LeaseLost(self.lost)
            return
        if self.history.db.group_commit or type(event) not in _APPLY_TYPES:
            committed = self.flush(event)
        else:  # a file: the apply's own rows alone (a small commit), its event row with the batch
            if self._samples and isinstance(event, ApplyStarted):
                self.flush()  # the wave's baselines: durable before its first apply starts
            committed = self.flush(event, rows=False)
        if not committed:
            if isinstance(event, ApplyStarted) and self.lost is not None:
                raise LeaseLost(self.lost)
            return
        if isinstance(event, ApplyStarted):
            self.unfinished[event.target] = None
        elif isinstance(event, ApplyFinished):
            self.unfinished.pop(event.target, None)
        if isinstance(event, ApplyStarted | ApplyAdopted | ApplyFinished):
            self._tails.pop(event.target, None)  # only once committed: a retry writes it again

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

    def flush(self, event: Event | None = None, *, rows: bool = True) -> bool:
        """Write the buffered rows (not with ``rows=False``), and what ``event`` changes, in one
        transaction; whether it was committed."""
        if self._timer is not None and rows:
            self._timer.cancel()
            self._timer = None
        if self.failure is not None:
            return False
        if self.lost is not None:  # nothing more is written by a process that lost the lease
            self._events.clear()
            self._samples.clear()
            return False
        gone = self._identity.gone()
        if gone is not None:
            self._fail(gone)
            return False
        db = self.history.db
        events, samples = (self._events, self._samples) if rows else ([], [])

        def batch() -> None:
            if events:
                db.executemany(_EVENT_SQL, events)
            if samples:
                db.executemany(_SAMPLE_SQL, samples)
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
        return True

    def _write(self, body: Callable[[], None]) -> None:
        """Run ``body`` in one fenced write transaction. A connection that broke (a database
        server restarted) is reconnected with backoff and the transaction run again — meanwhile
        nothing else happens, so no apply starts unrecorded. A history unreachable for the lease
        timeout cannot vouch for the lease any more: :class:`LeaseLost`."""
        while True:
            try:
                with self.history.writing():
                    body()
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
        meanwhile, and the new driver re-runs that apply: it must not be launched twice."""
        if self.lost is None and self.failure is None and self.history.fence is not None:
            try:
                self._write(lambda: None)  # a fenced, empty transaction
            except LeaseLost as exc:
                self._lose(exc)
            except WRITE_ERRORS as exc:  # the start is recorded: in flight, waited for
                self._fail(describe(exc, self.history.path))
        if self.lost is not None:
            raise LeaseLost(self.lost)

    def _lose(self, exc: LeaseLost) -> None:
        """The lease is gone: drop what is buffered, write nothing more, tell the session."""
        self.lost = str(exc)
        self._events.clear()
        self._samples.clear()
        if self.on_lost is not None:
            self.on_lost(exc)

    def _apply(self, event: Event) -> None:
        """Inside the write transaction: what ``event`` changes besides its own event row."""
        tail = self._tails.get(getattr(event, "target", ""), ())
        for sql, params in changes(event, self.rollout_id, self.module, tail):
            self.history.db.execute(sql, params)
