"""The console model folds the event stream alone into what the screen shows (no app needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tui_support import FrozenClock

from sluice.engine.model.estate import load_estate
from sluice.engine.rollout.events import ApplyOutput, Event
from sluice.engine.rollout.orchestrator import Rollout
from sluice.tui.driver import open_session
from sluice.tui.model import ConsoleModel
from sluice.tui.views import Limits, Series
from sluice.tui.widgets.metrics import _limit, combine

pytestmark = pytest.mark.timeout(60)


async def _recorded(estate_path: Path, version: str, **frozen: Any) -> tuple[list[Event], Rollout]:
    estate = load_estate(estate_path)
    session = open_session(estate, **frozen)
    try:
        rollout = session.new_rollout(
            session.plan("postgres-operator", version), clock=FrozenClock(), interactive=False
        )
        events: list[Event] = []
        rollout.bus.listen(events.append)
        await session.drive(rollout)
        return events, rollout
    finally:
        session.close()


async def test_folding_a_halted_rollout(estate_path, frozen_engine) -> None:
    events, rollout = await _recorded(estate_path, "2.0.0", **frozen_engine)
    estate = load_estate(estate_path)
    model = ConsoleModel(estate, now=lambda: events[-1].ts)
    model.apply_all(events)
    assert model.state == "halted" and model.outcome == "halted"  # headless: halts and ends
    assert model.version == "2.0.0" and model.from_text == "1.12.0"
    for name, target in rollout.targets.items():
        assert (model.targets[name].status, model.targets[name].version) == (
            target.status,
            target.version,
        ), name
    assert model.waves[1].status == "passed"
    assert model.waves[2].verdict == "failed"
    assert model.counts(model.waves[2]) == {"ok": 6}
    series = model.series[(2, "p99_latency", "dev-eu-1")]
    assert series.baseline is not None and series.outcomes == ["fail", "fail"]
    assert model.elapsed() == pytest.approx(events[-1].ts - events[0].ts)
    assert model.eta() is None  # finished


async def test_output_lines_are_coalesced_into_one_dirty_mark(estate_path) -> None:
    model = ConsoleModel(load_estate(estate_path), now=lambda: 0.0)
    model.take_dirty()
    for i in range(1000):
        model.apply(ApplyOutput(seq=i, ts=0.0, target="eph-101", stream="stdout", line=f"{i}"))
    dirty = model.take_dirty()
    assert dirty.output == {"eph-101"} and not dirty.structure
    assert model.targets["eph-101"].written == 1000
    assert len(model.targets["eph-101"].output) == 400  # bounded
    assert not model.take_dirty()


def test_a_wave_sparkline_is_the_worst_value_per_round() -> None:
    limits = Limits(max=0.25, max_increase=0.5)
    a = Series(baseline=0.10, values=[0.11, 0.30], outcomes=["pass", "fail"])
    b = Series(baseline=0.14, values=[0.20, None], outcomes=["pass", "error"])
    wave = combine([a, b], limits)
    assert wave.values == [0.20, 0.30]
    assert wave.outcomes == ["pass", "fail"]
    assert wave.baseline == pytest.approx(0.12)


def test_the_limit_line_is_the_tighter_of_absolute_and_relative() -> None:
    assert _limit(Limits(max=0.25, max_increase=0.5), 0.12) == (
        pytest.approx(0.18),
        "0.18 (base+50%, max 0.25)",
    )
    assert _limit(Limits(max=0.01), None) == (0.01, "max 0.01")
    assert _limit(Limits(), None) == (None, "none")
