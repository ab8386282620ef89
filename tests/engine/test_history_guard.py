"""The history deleted between one apply's end and the next one's start (issue 12, item 3):
the start cannot be recorded, so that apply is never launched, and the rollout ends at once
(nothing else is in flight) instead of waiting paused for ever. A real SQLite file, really
deleted; the real session, recorder and guard."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from sluice.engine.app.session import Session
from sluice.engine.model.estate import load_estate
from sluice.engine.rollout.events import ApplyFinished, ApplyStarted, Event
from sluice.engine.support.clock import Clock

ESTATE = """\
[estate]
name = "guard"

[[channels]]
name = "dev"

[targets.a]
channel = "dev"
executor = "sim"

[targets.b]
channel = "dev"
executor = "sim"

[targets.c]
channel = "dev"
executor = "sim"

[executors.sim]
kind = "simulated"
duration = "0s..0s"

[modules.m]
versions = ["1", "2"]
initial = "1"
"""


@pytest.mark.timeout(30)
async def test_a_start_that_cannot_be_recorded_is_never_launched(tmp_path: Path) -> None:
    (tmp_path / "estate.toml").write_text(ESTATE)
    estate = load_estate(tmp_path / "estate.toml")
    session = Session.open(estate)
    try:
        rollout = session.new_rollout(session.plan("m", "2"), clock=Clock(0), interactive=False)
        starts: list[str] = []

        def delete_after_a(event: Event) -> None:
            if isinstance(event, ApplyStarted):
                starts.append(event.target)
            if isinstance(event, ApplyFinished) and event.target == "a":
                shutil.rmtree(estate.history_path.parent)  # after a's end was recorded

        rollout.bus.listen(delete_after_a)
        outcome = await asyncio.wait_for(session.drive(rollout), 20)
    finally:
        session.close()
    assert outcome.outcome == "history_failed" and outcome.exit_code == 7, outcome
    assert starts == ["a", "b"]  # b's start was announced, could not be recorded...
    assert rollout.targets["a"].status == "ok"
    assert rollout.targets["b"].status == "pending"  # ...so it was never launched
    assert rollout.targets["c"].status == "pending"
    assert session.history_failure is not None
    assert "deleted" in session.history_failure
    assert "no apply was in flight" in session.history_failure
