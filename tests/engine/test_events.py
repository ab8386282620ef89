"""The event bus: stamping, listeners, bounded subscriptions that are told when they lag."""

from __future__ import annotations

import asyncio
import json

import pytest
from rollout_helpers import build_estate, channel, make_rollout, members

from sluice.engine.rollout.events import (
    ApplyOutput,
    Event,
    EventBus,
    GateEvaluated,
    Lagged,
    Notice,
    RolloutFinished,
    RolloutStarted,
    StateChanged,
    event_from_dict,
)


def notice(bus: EventBus, n: int) -> Event:
    return bus.emit(Notice, level="info", message=f"n{n}")


async def drain(subscription) -> list[Event | Lagged]:
    return [item async for item in subscription]


@pytest.mark.timeout(10)
def test_emit_stamps_strictly_increasing_seq_and_the_clock():
    ticks = iter(range(100, 200))
    bus = EventBus(start_seq=41, clock=lambda: float(next(ticks)))
    events = [notice(bus, i) for i in range(5)]
    assert [e.seq for e in events] == [41, 42, 43, 44, 45]
    assert [e.ts for e in events] == [100.0, 101.0, 102.0, 103.0, 104.0]


@pytest.mark.timeout(10)
def test_listeners_are_called_inline_in_order():
    bus = EventBus()
    seen: list[tuple[str, int]] = []
    bus.listen(lambda e: seen.append(("a", e.seq)))
    bus.listen(lambda e: seen.append(("b", e.seq)))
    notice(bus, 1)
    assert seen == [("a", 1), ("b", 1)]  # before emit returned
    notice(bus, 2)
    assert seen[2:] == [("a", 2), ("b", 2)]


@pytest.mark.timeout(10)
async def test_subscribers_each_get_every_event_in_order_until_close():
    bus = EventBus()
    first, second = bus.subscribe(), bus.subscribe()
    emitted = [notice(bus, i) for i in range(20)]
    bus.close()
    assert await drain(first) == emitted
    assert await drain(second) == emitted


@pytest.mark.timeout(10)
async def test_a_subscriber_that_falls_behind_is_told_how_much_it_missed():
    bus = EventBus()
    subscription = bus.subscribe(maxsize=4)
    iterator = aiter(subscription)
    for i in range(10):  # 4 fit, 6 are dropped
        notice(bus, i)
    assert [(await anext(iterator)).seq for _ in range(2)] == [1, 2]
    notice(bus, 10)  # room again: the marker goes in before the next event
    rest = [await anext(iterator) for _ in range(4)]
    assert [getattr(e, "seq", None) for e in rest] == [3, 4, None, 11]
    assert rest[2] == Lagged(6)
    # seq shows the gap too: 4 → 11 is the 6 that were dropped
    bus.close()
    assert await drain(subscription) == []


@pytest.mark.timeout(10)
async def test_close_reaches_a_full_subscription_and_reports_the_loss():
    bus = EventBus()
    subscription = bus.subscribe(maxsize=3)
    for i in range(10):
        notice(bus, i)
    bus.close()
    items = await drain(subscription)
    events = [i for i in items if isinstance(i, Event)]
    lagged = [i for i in items if isinstance(i, Lagged)]
    assert len(lagged) == 1 and items[-1] is lagged[0]
    assert len(events) + lagged[0].dropped == 10  # every event accounted for


@pytest.mark.timeout(10)
async def test_a_closed_subscription_gets_nothing_more():
    bus = EventBus()
    subscription = bus.subscribe()
    notice(bus, 1)
    subscription.close()
    notice(bus, 2)
    bus.close()
    queued = subscription._queue.qsize()
    assert queued == 1  # only the event before close; no end marker either


@pytest.mark.timeout(30)
async def test_a_subscriber_that_never_reads_does_not_stall_the_engine(tmp_path):
    estate = build_estate(
        tmp_path,
        channels=[channel("a", max_parallel=50), channel("b", max_parallel=50)],
        targets={**members("a", 150), **members("b", 150)},
    )
    rollout = make_rollout(estate)
    stuck = rollout.bus.subscribe(maxsize=16)  # never read while the rollout runs
    reader = rollout.bus.subscribe()
    outcome = await asyncio.wait_for(rollout.run(), 20)
    assert outcome.outcome == "done"
    rollout.bus.close()

    everything = await drain(reader)
    assert not any(isinstance(i, Lagged) for i in everything)  # the roomy one kept up
    assert isinstance(everything[0], RolloutStarted)
    assert isinstance(everything[-1], RolloutFinished)
    assert len(everything) > 300 * 5

    items = await drain(stuck)
    lagged = [i for i in items if isinstance(i, Lagged)]
    assert lagged and lagged[0].dropped > 0
    kept = [i for i in items if isinstance(i, Event)]
    assert len(kept) + sum(m.dropped for m in lagged) == len(everything)


@pytest.mark.timeout(10)
def test_every_event_survives_a_json_round_trip():
    bus = EventBus()
    originals = [
        bus.emit(StateChanged, state="halted", wave=2, detail="gate failed"),
        bus.emit(ApplyOutput, target="t", stream="stderr", line="x"),
        bus.emit(
            GateEvaluated,
            wave=1,
            verdict="failed",
            reasons=("a", "b"),
            checks={"lat": {"targets": {"t": {"values": [0.1, None]}}}},
            early=True,
        ),
        bus.emit(
            RolloutStarted,
            rollout_id=3,
            estate="e",
            module="m",
            version="2",
            actor="me",
            plan={"waves": []},
        ),
    ]
    for event in originals:
        data = json.loads(json.dumps(event.to_dict()))
        assert data["kind"] == event.kind
        rebuilt = event_from_dict(data)
        assert type(rebuilt) is type(event)
        assert rebuilt.seq == event.seq and rebuilt.ts == event.ts
        if not isinstance(event, GateEvaluated | RolloutStarted):  # dicts keep their lists
            assert rebuilt == event
