"""Governance in the engine: entry approvals, N approvers, windows on an injected clock, freezes."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from sluice.engine.app.governance import RequestPump
from sluice.engine.app.session import Session
from sluice.engine.model.estate import Estate, load_estate
from sluice.engine.rollout.events import StateChanged, WaveStarted
from sluice.engine.rollout.governance import Freeze
from sluice.engine.store import requests as store
from sluice.engine.support.clock import Clock

SAMPLE = Path(__file__).resolve().parents[2] / "sample_estate.toml"
MODULE = "postgres-operator"
BERLIN = ZoneInfo("Europe/Berlin")


def make_estate(tmp_path: Path, *, approvers: int = 1, windows: str = "") -> Estate:
    text = SAMPLE.read_text()
    text = text.replace(
        'entry = "manual"                      # manual:',
        f'entry = "manual"\napprovers = {approvers}                         # manual:',
    )
    path = tmp_path / "estate.toml"
    path.write_text(text + windows)
    return load_estate(path)


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def production_targets(estate: Estate) -> set[str]:
    return set(estate.channel("production").targets)


@pytest.mark.timeout(60)
async def test_entry_approval_blocks_before_any_target_of_the_channel_is_applied(tmp_path):
    estate = make_estate(tmp_path)
    session = Session.open(estate)
    try:
        ledger_before = session.history.ledger(MODULE)
        rollout = session.new_rollout(
            session.plan(MODULE, "2.0.1"), clock=Clock(0), interactive=False
        )
        seen: list = []
        rollout.bus.listen(seen.append)
        outcome = await session.drive(rollout)
        assert outcome.outcome == "stopped" and outcome.exit_code == 4
        assert "production needs approval to start: 0 of 1" in outcome.summary
        prod = production_targets(estate)
        # Nothing of production happened: no wave start, no apply, no baseline, no ledger row.
        assert [e.wave for e in seen if isinstance(e, WaveStarted)] == [1, 2, 3, 4]
        applied = {row["target"] for row in session.history.applies(rollout.rollout_id)}
        assert applied and not applied & prod
        sampled = {s["target"] for s in session.history.samples(rollout.rollout_id)}
        assert not sampled & prod
        ledger = session.history.ledger(MODULE)
        assert ledger_before == {} and prod.isdisjoint(ledger)
        assert [w["number"] for w in session.history.waves(rollout.rollout_id)] == [1, 2, 3, 4]
    finally:
        session.close()


@pytest.mark.timeout(60)
async def test_two_distinct_approvers_are_needed_and_the_same_person_counts_once(tmp_path):
    estate = make_estate(tmp_path, approvers=2)
    session = Session.open(estate)
    try:
        rollout = session.new_rollout(session.plan(MODULE, "2.0.1"), clock=Clock(0))
        seen: list = []
        rollout.bus.listen(seen.append)
        task = asyncio.ensure_future(session.drive(rollout))
        await until(lambda: rollout.state == "awaiting_entry")
        assert rollout.current_wave == 5
        first = rollout.approve_wave("ok", actor="alice", wave=5)
        assert first.ok and first.message.startswith("1 of 2 approvals of wave 5 (by alice)")
        again = rollout.advance("again", actor="alice")
        assert not again.ok and "alice already approved wave 5: 1 of 2" in again.message
        assert rollout.state == "awaiting_entry"  # still waiting
        states = [e for e in seen if isinstance(e, StateChanged) and e.state == "awaiting_entry"]
        assert states[-1].detail == "production needs approval to start: 1 of 2 (by alice)"
        wrong = rollout.approve_wave("", actor="bob", wave=6)
        assert not wrong.ok and wrong.message == "wave 6 is not waiting for approval (wave 5 is)"
        done = rollout.approve_wave("lgtm", actor="bob", wave=5)
        assert done == (True, "wave 5 approved (by alice, bob)")
        await until(lambda: rollout.state == "awaiting_approval")  # wave 5's manual gate
        gate = rollout.advance("", actor="carol")
        assert gate.ok and gate.message.startswith("1 of 2")
        rollout.abort("enough", actor="carol")
        assert (await task).outcome == "aborted"
        approvals = [
            (a["actor"], a["wave"])
            for a in session.history.operator_actions(rollout.rollout_id)
            if a["action"] == "approve"
        ]
        assert approvals == [("alice", 5), ("bob", 5), ("carol", 5)]
    finally:
        session.close()


class WallClock(Clock):
    """Timers take no time; the wall clock is whatever the test sets."""

    def __init__(self, start: dt.datetime):
        self.moment = start.timestamp()
        super().__init__(0, wall=lambda: self.moment)

    def set(self, moment: dt.datetime) -> None:
        self.moment = moment.timestamp()


BUSINESS = """
[[windows]]
name = "business-hours"
channels = ["production"]
timezone = "Europe/Berlin"
allow = [{ days = ["mon", "tue", "wed", "thu", "fri"], start = "09:00", end = "16:00" }]
"""


@pytest.mark.timeout(60)
async def test_a_wave_waits_for_its_window_across_the_dst_change_then_starts(tmp_path):
    estate = make_estate(tmp_path, windows=BUSINESS)
    clock = WallClock(dt.datetime(2026, 3, 27, 17, tzinfo=BERLIN))  # Friday after hours
    session = Session.open(estate)
    try:
        rollout = session.new_rollout(
            session.plan(MODULE, "2.0.1"), clock=clock, interactive=False, approve=True, wait=True
        )
        seen: list = []
        rollout.bus.listen(seen.append)
        task = asyncio.ensure_future(session.drive(rollout))
        await until(lambda: rollout.state == "held")
        held = [e for e in seen if isinstance(e, StateChanged) and e.state == "held"][-1]
        assert held.wave == 5
        assert held.detail.startswith(
            "wave 5 (production 1/3) held: production opens Mon 09:00 Europe/Berlin — in 2d15h"
        )
        prod = production_targets(estate)
        assert not {r["target"] for r in session.history.applies(rollout.rollout_id)} & prod
        clock.set(dt.datetime(2026, 3, 30, 8, 59, tzinfo=BERLIN))  # CEST now; a minute early
        await asyncio.sleep(1.5)  # longer than a recheck: it must still hold
        assert rollout.state == "held" and not any(
            isinstance(e, WaveStarted) and e.wave == 5 for e in seen
        )
        clock.set(dt.datetime(2026, 3, 30, 7, 0, tzinfo=dt.UTC))  # 09:00 CEST
        await until(lambda: any(isinstance(e, WaveStarted) and e.wave == 5 for e in seen))
        rollout.abort("test over")
        await task
    finally:
        session.close()


@pytest.mark.timeout(60)
async def test_a_held_wave_can_be_bypassed_with_a_reason_which_is_recorded(tmp_path):
    estate = make_estate(tmp_path, windows=BUSINESS)
    clock = WallClock(dt.datetime(2026, 12, 5, 12, tzinfo=BERLIN))  # Saturday
    session = Session.open(estate)
    try:
        rollout = session.new_rollout(session.plan(MODULE, "2.0.1"), clock=clock)
        task = asyncio.ensure_future(session.drive(rollout))
        await until(lambda: rollout.state == "held")
        assert not rollout.bypass("  ").ok
        assert rollout.bypass("CVE-2026-1234", actor="sec").ok
        await until(lambda: rollout.state == "awaiting_entry")  # the window, not the approval
        rollout.abort("test over")
        await task
        actions = session.history.operator_actions(rollout.rollout_id)
        assert ("bypass_window", "sec", "CVE-2026-1234", 5) in [
            (a["action"], a["actor"], a["reason"], a["wave"]) for a in actions
        ]
    finally:
        session.close()


@pytest.mark.timeout(60)
async def test_a_freeze_holds_the_next_wave_of_a_running_rollout_until_unfrozen(tmp_path):
    estate = make_estate(tmp_path)
    session = Session.open(estate)
    try:
        rollout = session.new_rollout(
            # Scaled so wave 1 soaks ~1.5 s: the freeze is seen (polled every 0.2 s) before wave 2.
            session.plan(MODULE, "2.0.1"),
            clock=Clock(0.1),
            interactive=False,
            wait=True,
            until_wave=3,
        )
        seen: list = []
        rollout.bus.listen(seen.append)
        # Frozen while wave 1 runs (the pump reads it from history, as from another process).
        started = asyncio.Event()
        rollout.bus.listen(lambda e: started.set() if isinstance(e, WaveStarted) else None)
        task = asyncio.ensure_future(session.drive(rollout))
        await started.wait()
        store.freeze(
            session.history, estate=estate.name, actor="ops", reason="incident 42", until=None
        )
        await until(lambda: rollout.state == "held")
        assert rollout.freeze is not None and rollout.freeze.reason == "incident 42"
        held_at = rollout.current_wave
        assert held_at == 2
        assert not any(isinstance(e, WaveStarted) and e.wave == held_at for e in seen)
        store.unfreeze(session.history, estate=estate.name, actor="ops")
        outcome = await task
        assert outcome.outcome == "stopped" and "after wave 3" in outcome.summary
        assert any(isinstance(e, WaveStarted) and e.wave == held_at for e in seen)
    finally:
        session.close()


def test_a_freeze_until_a_time_ends_by_itself():
    freeze = Freeze("ops", "release party", since=100.0, until=200.0)
    assert freeze.active(150.0) and not freeze.active(200.0)
    assert "estate frozen by ops until " in freeze.text() and freeze.text().endswith(
        "release party"
    )


@pytest.mark.timeout(60)
async def test_requests_are_carried_out_once_and_answered(tmp_path):
    estate = make_estate(tmp_path)
    session = Session.open(estate)
    try:
        rollout = session.new_rollout(session.plan(MODULE, "2.0.1"), clock=Clock(0))
        task = asyncio.ensure_future(session.drive(rollout))
        await until(lambda: rollout.state == "awaiting_entry")
        ids = [
            store.add_request(
                session.history, estate=estate.name, actor=who, host="h", action="approve", wave=5
            )
            for who in ("dora", "dora")
        ]
        stale = store.add_request(
            session.history, estate=estate.name, actor="ghost", host="h", action="abort"
        )
        with session.history.db.atomic():  # written long ago by a requester that died waiting
            session.history.db.execute("UPDATE requests SET ts = ts - 3600 WHERE id = ?", [stale])
        pump = RequestPump(session.history, rollout, "test")
        pump.poll()
        ghost = store.request(session.history, stale)
        assert ghost is not None and ghost.status == "expired" and rollout._aborting is None
        answers = [store.request(session.history, i) for i in ids]
        assert [(a.status, a.result) for a in answers if a] == [
            ("done", "wave 5 approved"),
            ("refused", "wave 5 is not waiting for approval"),
        ]
        assert not store.claim_request(session.history, ids[0], "late")  # answered: never again
        rollout.abort("test over")
        await task
        assert [r["actor"] for r in store.requests_of(session.history, rollout.rollout_id)] == [
            "dora",
            "dora",
        ]
    finally:
        session.close()
