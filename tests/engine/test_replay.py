"""Replay: recorded events in their order, at their recorded pace scaled by a speed, with seeks."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import time
from pathlib import Path

import pytest

from sluice.engine.app.session import Session
from sluice.engine.model.estate import load_estate
from sluice.engine.rollout.events import (
    ApplyOutput,
    Event,
    EventBus,
    Notice,
    RolloutStarted,
    WaveStarted,
)
from sluice.engine.store.history import History
from sluice.engine.store.recorder import Recorder
from sluice.engine.store.replay import MAX_GAP_SECONDS, ReplaySource
from sluice.engine.support.clock import Clock

SAMPLE = Path(__file__).resolve().parents[2] / "sample_estate.toml"


async def collect(source: ReplaySource, **kwargs) -> list[Event]:
    return [event async for event in source.play(**kwargs)]


def record_stream(tmp_path: Path, stamps: list[float], waves_at: dict[int, int]) -> History:
    """A rollout whose events carry the given timestamps; event ``i`` starts wave ``waves_at[i]``."""
    history = History.open(tmp_path / "h.db")
    rollout_id = history.create_rollout(
        estate="e", module="m", version="2", from_versions="1", actor="a", host="h",
        plan={"waves": []}, started=stamps[0],
    )  # fmt: skip
    clock = iter(stamps)
    bus = EventBus(clock=lambda: next(clock))
    recorder = Recorder(history, rollout_id, "m")
    bus.listen(recorder)
    for i in range(len(stamps)):
        if i in waves_at:
            bus.emit(WaveStarted, wave=waves_at[i], channel="c", name="c", targets=("t",))
        else:
            bus.emit(ApplyOutput, target="t", stream="stdout", line=f"line {i}")
    recorder.flush()
    return history


@pytest.fixture
def recorded_rollout(tmp_path):
    """A real simulated rollout of the sample estate, recorded; yields (history, id, live events)."""
    shutil.copy(SAMPLE, tmp_path / "estate.toml")
    estate = load_estate(tmp_path / "estate.toml")

    async def run() -> tuple[int, list[Event]]:
        session = Session.open(estate)
        try:
            # A small time scale, so the recording has real gaps to replay.
            rollout = session.new_rollout(
                session.plan("postgres-operator", "2.0.1"),
                clock=Clock(0.002),
                interactive=False,
                until_wave=4,
            )
            seen: list[Event] = []
            rollout.bus.listen(seen.append)
            await session.drive(rollout)
            return rollout.rollout_id, seen
        finally:
            session.close()

    rollout_id, seen = asyncio.run(run())
    history = History.open(estate.history_path, create=False)
    yield history, rollout_id, seen
    history.close()


@pytest.mark.timeout(60)
async def test_replay_yields_the_recorded_events_in_order(recorded_rollout):
    history, rollout_id, live = recorded_rollout
    source = ReplaySource(history, rollout_id)
    assert len(source.events) == len(live)
    replayed = await collect(source, speed=0)
    assert replayed == live
    assert isinstance(replayed[0], RolloutStarted)
    assert source.position == len(live)
    assert await collect(source, speed=0) == []  # the cursor is at the end
    # Replayed events feed an ordinary bus, like live ones.
    bus = EventBus()
    fed: list[Event] = []
    bus.listen(fed.append)
    source.seek_time(0)
    async for event in source.play(speed=0):
        bus.publish(event)
    assert fed == live


@pytest.mark.timeout(60)
async def test_replay_keeps_the_recorded_pacing_divided_by_the_speed(recorded_rollout):
    history, rollout_id, live = recorded_rollout
    source = ReplaySource(history, rollout_id)
    recorded = source.duration
    assert recorded == pytest.approx(live[-1].ts - live[0].ts)
    assert recorded > 0.1
    speed = 2.0
    started = time.monotonic()
    replayed = await collect(source, speed=speed)
    took = time.monotonic() - started
    assert replayed == live
    # Sleeps only add up: never faster than recorded / speed (upper bounds are load-dependent).
    assert took >= 0.9 * recorded / speed


@pytest.mark.timeout(30)
async def test_long_recorded_pauses_are_shortened(tmp_path):
    history = record_stream(tmp_path, [1000.0, 1001.0, 5000.0, 5001.0], {})
    try:
        source = ReplaySource(history, 1)
        assert source.duration == 4001.0
        started = time.monotonic()
        events = await collect(source, speed=20, max_gap=1.0)
        took = time.monotonic() - started
        assert [e.ts for e in events] == [1000.0, 1001.0, 5000.0, 5001.0]
        assert took >= 3 * 1.0 / 20 * 0.9
        assert took < 20  # not 4001 / 20 = 200 s
        assert MAX_GAP_SECONDS < 60
    finally:
        history.close()


@pytest.mark.timeout(30)
async def test_seek_to_a_wave_or_a_time(tmp_path):
    stamps = [100.0 + i for i in range(10)]
    # waves start at events 2 and 6; event 8 starts wave 4 (wave 3 was never recorded)
    history = record_stream(tmp_path, stamps, {2: 1, 6: 2, 8: 4})
    try:
        source = ReplaySource(history, 1)
        assert source.wave_starts() == {1: 2, 2: 6, 4: 8}
        assert source.seek_wave(2) == 6
        assert [e.seq for e in source.until_cursor()] == [1, 2, 3, 4, 5, 6]
        first = await anext(aiter(source.play(speed=0)))
        assert isinstance(first, WaveStarted) and first.wave == 2
        assert source.seek_wave(3) == 6  # not recorded: the nearest wave before it
        assert source.seek_wave(4) == 8
        assert source.seek_wave(0) == 0
        assert source.seek_time(3.0) == 3
        assert source.seek_time(3.5) == 4
        assert source.seek_time(0) == 0
        assert source.seek_time(99) == 10
        assert source.until_cursor() == history.events(1)
        assert await collect(source, speed=0) == []
        source.seek_time(7)
        assert [e.ts for e in await collect(source, speed=1000)] == [107.0, 108.0, 109.0]
    finally:
        history.close()


@pytest.mark.timeout(30)
async def test_pause_seek_and_speed_take_effect_while_playing(tmp_path):
    stamps = [float(i) for i in range(200)]
    history = record_stream(tmp_path, stamps, {100: 5})
    try:
        source = ReplaySource(history, 1)
        player = source.play(speed=1000)
        got = [await anext(player) for _ in range(3)]
        assert [e.seq for e in got] == [1, 2, 3]
        source.pause()
        assert source.paused
        waiting = asyncio.ensure_future(anext(player))
        for _ in range(20):  # the player does not get past the pause, however long we let it run
            await asyncio.sleep(0)
        assert not waiting.done()
        source.seek_wave(5)  # a seek while paused: the next event is the wave's start, at once
        source.speed = 0
        source.resume()
        nxt = await asyncio.wait_for(waiting, timeout=10)
        assert isinstance(nxt, WaveStarted) and nxt.wave == 5
        rest = [e async for e in player]
        assert [e.seq for e in rest] == list(range(102, 201))
    finally:
        history.close()


@pytest.mark.timeout(60)
async def test_a_large_recording_loads_without_decoding_everything(tmp_path):
    count = 20_000
    stamps = [float(i) / 100 for i in range(count)]
    history = record_stream(tmp_path, stamps, {0: 1, count // 2: 2})
    try:
        source = ReplaySource(history, 1)
        assert len(source.events) == count
        assert source.events._events.count(None) == count  # nothing decoded yet
        assert source.wave_starts() == {1: 0, 2: count // 2}
        assert source.events._events.count(None) == count - 2  # only the wave starts
        source.seek_time(50)
        assert len(source.until_cursor()) == 5000
        assert source.events[-1].seq == count
        assert list(itertools.islice(source.events, 3))[2].seq == 3
        assert [e.seq for e in source.events[10:13]] == [11, 12, 13]
        assert [e.seq for e in source.events] == list(range(1, count + 1))
        assert all(isinstance(e, (ApplyOutput, WaveStarted, Notice)) for e in source.events)
    finally:
        history.close()
