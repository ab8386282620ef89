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


@pytest.mark.timeout(30)
async def test_starts_committed_together_then_the_history_fails_before_they_launch(
    tmp_path: Path,
) -> None:
    """Group commit (PostgreSQL's way, forced here on a file): a wave's three starts commit
    together at the loop's next turn, and the history fails right after that commit, before the
    applies resume. None is launched; each ends ``aborted`` (its start is recorded), and the
    rollout ends at once — not paused for ever, waiting for applies the guard counted in flight."""
    (tmp_path / "estate.toml").write_text(
        ESTATE.replace('name = "dev"\n', 'name = "dev"\nmax_parallel = 3\n', 1)
    )
    estate = load_estate(tmp_path / "estate.toml")
    session = Session.open(estate)
    session.history.db.group_commit = True
    try:
        rollout = session.new_rollout(session.plan("m", "2"), clock=Clock(0), interactive=False)
        recorder = session.recorders[-1]
        loop = asyncio.get_running_loop()
        seen: list[Event] = []
        committed: list[str] = []

        def fail_after_the_commit() -> None:
            committed.extend(recorder.unfinished)  # the group commit ran just before this
            shutil.rmtree(estate.history_path.parent)
            recorder.flush()  # the next write finds the history gone

        def listen(event: Event) -> None:
            seen.append(event)
            if isinstance(event, ApplyStarted) and event.target == "c":
                loop.call_soon(fail_after_the_commit)  # after the group commit, before resuming

        rollout.bus.listen(listen)
        outcome = await asyncio.wait_for(session.drive(rollout), 20)
    finally:
        session.close()
    assert committed == ["a", "b", "c"]
    assert outcome.outcome == "history_failed" and outcome.exit_code == 7, outcome
    assert [e.kind for e in seen if e.kind.startswith("apply")] == (
        ["apply_started"] * 3 + ["apply_finished"] * 3
    )  # no output: nothing was launched
    for name in "abc":
        state = rollout.targets[name]
        assert state.status == "aborted" and state.reason.startswith("not started: "), state
    assert session.history_failure is not None and "deleted" in session.history_failure
