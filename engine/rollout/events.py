"""The one event stream: typed, frozen events and the bus that publishes them.

The console, the headless printer, the history recorder and replay all read the same events. The
bus stamps each with a monotonic sequence number and a wall-clock timestamp.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base of every event: ``seq`` orders them, ``ts`` is wall-clock seconds."""

    kind: ClassVar[str] = "event"
    seq: int = 0
    ts: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        data = {"kind": self.kind}
        data.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        return data


_KINDS: dict[str, type[Event]] = {}


def _register(cls: type[Event]) -> type[Event]:
    _KINDS[cls.kind] = cls
    return cls


def event_from_dict(data: dict[str, Any]) -> Event:
    """Rebuild an event from :meth:`Event.to_dict` output (history, replay, NDJSON)."""
    cls = _KINDS[data["kind"]]
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: _tuplify(v) for k, v in data.items() if k in names}
    return cls(**values)


def _tuplify(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuplify(v) for v in value)
    return value


@_register
@dataclass(frozen=True, kw_only=True)
class RolloutStarted(Event):
    kind: ClassVar[str] = "rollout_started"
    rollout_id: int
    estate: str
    module: str
    version: str
    actor: str
    plan: dict[str, Any] = field(hash=False)
    resumed: bool = False


@_register
@dataclass(frozen=True, kw_only=True)
class StateChanged(Event):
    """The rollout's state: running, paused, soaking, awaiting_approval, inconclusive, halted,
    rolling_back, rolled_back, done, aborted, stopped."""

    kind: ClassVar[str] = "state"
    state: str
    wave: int | None = None
    detail: str = ""


@_register
@dataclass(frozen=True, kw_only=True)
class WaveStarted(Event):
    kind: ClassVar[str] = "wave_started"
    wave: int
    channel: str
    name: str
    targets: tuple[str, ...]


@_register
@dataclass(frozen=True, kw_only=True)
class ApplyStarted(Event):
    kind: ClassVar[str] = "apply_started"
    wave: int
    target: str
    version: str
    from_version: str
    action: str = "apply"  # apply | rollback | retry
    command: str = ""  # what runs, secrets masked


@_register
@dataclass(frozen=True, kw_only=True)
class ApplyAdopted(Event):
    """A resume found an apply a stopped sluice left (``how``: ``running`` — re-attached to it —
    or ``finished`` — its status read): its ``ApplyFinished`` completes that apply's record."""

    kind: ClassVar[str] = "apply_adopted"
    wave: int
    target: str
    version: str
    from_version: str
    action: str
    how: str  # running | finished
    spool: str = ""


@_register
@dataclass(frozen=True, kw_only=True)
class ApplyOutput(Event):
    kind: ClassVar[str] = "apply_output"
    target: str
    stream: str  # stdout | stderr
    line: str


@_register
@dataclass(frozen=True, kw_only=True)
class ApplyFinished(Event):
    kind: ClassVar[str] = "apply_finished"
    wave: int
    target: str
    version: str
    from_version: str
    action: str
    outcome: str  # ok | failed | aborted | unknown
    reason: str = ""
    duration: float = 0.0


@_register
@dataclass(frozen=True, kw_only=True)
class WaveApplied(Event):
    """The wave's applies are over; ``summary`` states the budget unambiguously."""

    kind: ClassVar[str] = "wave_applied"
    wave: int
    ok: int
    failed: int
    tolerated: int
    skipped: int
    budget_exceeded: bool
    summary: str


@_register
@dataclass(frozen=True, kw_only=True)
class SoakStarted(Event):
    kind: ClassVar[str] = "soak_started"
    wave: int
    seconds: float  # scaled: real seconds the soak will take
    configured: float  # as the estate says
    checks: tuple[str, ...] = ()


@_register
@dataclass(frozen=True, kw_only=True)
class SampleTaken(Event):
    """One measurement of one check on one target (``phase``: baseline, soak or control)."""

    kind: ClassVar[str] = "sample"
    wave: int
    check: str
    target: str
    phase: str
    value: float | None
    baseline: float | None
    outcome: str  # pass | fail | inconclusive | error | baseline
    reason: str = ""


@_register
@dataclass(frozen=True, kw_only=True)
class GateEvaluated(Event):
    """The gate's verdict with the measurements behind it (``checks``: per check, per target)."""

    kind: ClassVar[str] = "gate"
    wave: int
    verdict: str  # passed | failed | inconclusive | skipped
    reasons: tuple[str, ...]
    checks: dict[str, Any] = field(hash=False, default_factory=dict)
    early: bool = False


@_register
@dataclass(frozen=True, kw_only=True)
class OperatorAction(Event):
    kind: ClassVar[str] = "operator"
    action: str  # pause resume advance approve abort retry rollback bypass takeover
    actor: str
    reason: str = ""
    wave: int | None = None
    target: str | None = None


@_register
@dataclass(frozen=True, kw_only=True)
class WaveFinished(Event):
    kind: ClassVar[str] = "wave_finished"
    wave: int
    outcome: str  # passed | approved | bypassed | failed | inconclusive | rolled_back | skipped


@_register
@dataclass(frozen=True, kw_only=True)
class RolloutFinished(Event):
    kind: ClassVar[str] = "rollout_finished"
    rollout_id: int
    outcome: str  # done | halted | aborted | stopped | crashed
    exit_code: int
    summary: str


@_register
@dataclass(frozen=True, kw_only=True)
class Notice(Event):
    """Something the operator should read that is not a state change (a failed webhook…)."""

    kind: ClassVar[str] = "notice"
    level: str  # info | warning | error
    message: str


@dataclass(frozen=True)
class Lagged:
    """Given to a subscriber in place of ``dropped`` events it was too slow to take."""

    dropped: int


Listener = Callable[[Event], None]


class Subscription:
    """An async iterator over the bus's events; bounded, and told when it falls behind."""

    def __init__(self, bus: EventBus, maxsize: int):
        self._bus = bus
        self._queue: asyncio.Queue[Event | Lagged | None] = asyncio.Queue(maxsize)
        self._dropped = 0

    def _offer(self, event: Event | None) -> None:
        if self._dropped and self._queue.qsize() < self._queue.maxsize - 1:
            self._queue.put_nowait(Lagged(self._dropped))
            self._dropped = 0
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            if event is None:
                # The end must arrive: drop the oldest to make room.
                self._queue.get_nowait()
                self._dropped += 1
                self._queue.put_nowait(event)
            else:
                self._dropped += 1

    def __aiter__(self) -> AsyncIterator[Event | Lagged]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event | Lagged]:
        while True:
            item = await self._queue.get()
            if item is None:
                if self._dropped:
                    yield Lagged(self._dropped)
                return
            yield item

    def close(self) -> None:
        self._bus._subscriptions.discard(self)


class EventBus:
    """Publishes events to listeners (called inline, must be quick) and subscriptions (queued)."""

    def __init__(self, *, start_seq: int = 1, clock: Callable[[], float] = time.time):
        self._seq = itertools.count(start_seq)
        self._clock = clock
        self._listeners: list[Listener] = []
        self._subscriptions: set[Subscription] = set()
        self.closed = False

    def listen(self, listener: Listener) -> None:
        """Call ``listener`` synchronously for every event, in order (the history recorder)."""
        self._listeners.append(listener)

    def subscribe(self, maxsize: int = 10_000) -> Subscription:
        subscription = Subscription(self, maxsize)
        self._subscriptions.add(subscription)
        return subscription

    def emit(self, cls: type[Event], /, **fields: Any) -> Event:
        """Build, stamp and publish one event."""
        event = cls(seq=next(self._seq), ts=self._clock(), **fields)
        self.publish(event)
        return event

    def publish(self, event: Event) -> None:
        """Publish an already-stamped event (replay feeds recorded events through here)."""
        for listener in self._listeners:
            listener(event)
        for subscription in list(self._subscriptions):
            subscription._offer(event)

    def close(self) -> None:
        """End every subscription's iteration."""
        self.closed = True
        for subscription in list(self._subscriptions):
            subscription._offer(None)


@_register
@dataclass(frozen=True, kw_only=True)
class PlansReviewed(Event):
    """A ``review = "plans"`` wave's plans, made before its applies, grouped for review.

    ``groups`` are :meth:`PlanGroup.to_dict` (largest first, outliers flagged); ``plans`` maps
    each target to the sha256 of its saved plan file — what an approval approves.
    """

    kind: ClassVar[str] = "plans_reviewed"
    wave: int
    groups: tuple[dict[str, Any], ...] = ()
    plans: dict[str, str] = field(default_factory=dict, hash=False)
    destroys: bool = False
    errors: dict[str, str] = field(default_factory=dict, hash=False)


@_register
@dataclass(frozen=True, kw_only=True)
class WatchStarted(Event):
    """Rear guard: a passed wave's checks go on being sampled for ``seconds`` (``watch_after``)."""

    kind: ClassVar[str] = "watch_started"
    wave: int
    seconds: float  # scaled: real seconds the watch will take
    configured: float  # as the estate says
    checks: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()


@_register
@dataclass(frozen=True, kw_only=True)
class WatchEnded(Event):
    """A rear-guard watch is over: ``outcome`` is ``passed``, ``regressed`` or ``cancelled``."""

    kind: ClassVar[str] = "watch_ended"
    wave: int
    outcome: str
    detail: str = ""
    elapsed: float = 0.0  # estate seconds after the wave passed (when it regressed)
