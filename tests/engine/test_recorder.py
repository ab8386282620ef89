"""The recorder: every event of a rollout reaches the history, in order; applies are durable first."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from history_rows import row_dict

from sluice.engine.app.session import Session
from sluice.engine.executors.base import ApplyResult
from sluice.engine.model.estate import load_estate
from sluice.engine.rollout.events import (
    ApplyFinished,
    ApplyOutput,
    ApplyStarted,
    Event,
    EventBus,
    GateEvaluated,
    OperatorAction,
    SampleTaken,
    WaveFinished,
    WaveStarted,
)
from sluice.engine.store.history import History
from sluice.engine.store.recorder import BATCH_SIZE, TAIL_LINES, Recorder
from sluice.engine.support.clock import Clock

SAMPLE = Path(__file__).resolve().parents[2] / "sample_estate.toml"


def sample_estate(tmp_path: Path):
    shutil.copy(SAMPLE, tmp_path / "estate.toml")
    return load_estate(tmp_path / "estate.toml")


def as_json(events: list[Event]) -> list[dict]:
    return [json.loads(json.dumps(e.to_dict(), default=str)) for e in events]


async def run_recorded(estate, spec: str, **options) -> tuple[list[Event], int, str]:
    """Run ``spec`` through a driving Session; returns (events seen by a listener, id, outcome)."""
    module, version = spec.split("@")
    session = Session.open(estate)
    try:
        rollout = session.new_rollout(
            session.plan(module, version), clock=Clock(0), interactive=False, **options
        )
        seen: list[Event] = []
        rollout.bus.listen(seen.append)
        subscription = rollout.bus.subscribe(maxsize=1_000_000)
        outcome = await session.drive(rollout)
        rollout.bus.close()
        subscribed = [e async for e in subscription]  # what a queued subscriber (the TUI) got
        assert subscribed == seen
        return seen, rollout.rollout_id, outcome.outcome
    finally:
        session.close()


@pytest.mark.timeout(60)
async def test_every_event_of_a_rollout_is_in_the_history_in_order(tmp_path):
    estate = sample_estate(tmp_path)
    seen, rollout_id, outcome = await run_recorded(estate, "postgres-operator@2.0.1", approve=True)
    assert outcome == "done"
    history = History.open(estate.history_path, create=False)
    try:
        recorded = history.events(rollout_id)
        assert [e.seq for e in seen] == list(range(1, len(seen) + 1))
        assert len(recorded) == len(seen) > 500
        assert recorded == seen  # field for field, order included
        assert as_json(recorded) == as_json(seen)
        assert [row_dict(r) for r in history.event_rows(rollout_id)] == as_json(seen)

        # The derived tables agree with the stream.
        samples = [e for e in seen if isinstance(e, SampleTaken)]
        rows = history.samples(rollout_id)
        assert [
            (r["check_name"], r["target"], r["phase"], r["value"], r["outcome"]) for r in rows
        ] == [(e.check, e.target, e.phase, e.value, e.outcome) for e in samples]
        # Each sample is stored once: its samples row (with its seq), not also a JSON row.
        db = history.db
        assert db.execute("SELECT COUNT(*) FROM event_log WHERE kind = 'sample'").fetchone()[0] == 0
        assert [seq for (seq,) in db.execute("SELECT seq FROM samples ORDER BY rowid")] == [
            e.seq for e in samples
        ]
        starts = [e for e in seen if isinstance(e, ApplyStarted)]
        finishes = {e.target: e for e in seen if isinstance(e, ApplyFinished)}
        applies = history.applies(rollout_id)
        assert [a["target"] for a in applies] == [e.target for e in starts]
        for row in applies:
            assert row["outcome"] == finishes[row["target"]].outcome == "ok"
            assert row["finished"] >= row["started"]
            assert row["from_version"] == "1.12.0" and row["version"] == "2.0.1"
            assert "apply complete" in row["output_tail"].splitlines()[-1]
        waves = history.waves(rollout_id)
        wave_finished = [e for e in seen if isinstance(e, WaveFinished)]
        assert [(w["number"], w["outcome"]) for w in waves] == [
            (e.wave, e.outcome) for e in wave_finished
        ]
        assert [w["verdict"] for w in waves] == [
            e.verdict for e in seen if isinstance(e, GateEvaluated)
        ]
        actions = history.operator_actions(rollout_id)
        assert [(a["action"], a["wave"]) for a in actions] == [
            (e.action, e.wave) for e in seen if isinstance(e, OperatorAction)
        ]
        # production's entry approval (before wave 5), then its three manual gates
        assert [(a["action"], a["wave"]) for a in actions] == [("approve", w) for w in (5, 5, 6, 7)]
        [record] = history.rollouts()
        assert (record.outcome, record.exit_code, record.waves_done, record.waves_total) == (
            "done",
            0,
            7,
            7,
        )
        assert set(history.ledger("postgres-operator").values()) == {"2.0.1"}
        assert len(history.ledger("postgres-operator")) == len(estate.targets)
    finally:
        history.close()


@pytest.mark.timeout(60)
async def test_a_halted_rollout_records_its_gate_and_the_applies_that_happened(tmp_path):
    estate = sample_estate(tmp_path)
    seen, rollout_id, outcome = await run_recorded(estate, "postgres-operator@2.0.0")
    assert outcome == "halted"
    history = History.open(estate.history_path, create=False)
    try:
        assert history.events(rollout_id) == seen
        waves = history.waves(rollout_id)
        assert [(w["number"], w["outcome"], w["verdict"]) for w in waves] == [
            (1, "passed", "passed"),
            (2, "halted", "failed"),  # closed with the rollout: never "in progress"
        ]
        assert waves[1]["finished"] is not None
        assert any("p99_latency on dev-eu-1" in r for r in waves[1]["reasons"])
        # The dev targets applied 2.0.0 before the gate failed: the ledger says so.
        ledger = history.ledger("postgres-operator")
        dev = [n for n, t in estate.targets.items() if t.channel in ("ephemeral", "dev")]
        assert ledger == dict.fromkeys(dev, "2.0.0")
        record = history.rollout(rollout_id)
        assert record is not None
        assert (record.outcome, record.exit_code, record.waves_done) == ("halted", 1, 1)
        fails = [s for s in history.samples(rollout_id) if s["outcome"] == "fail"]
        assert fails and {s["check_name"] for s in fails} == {"p99_latency"}
        assert all(s["value"] > 0.25 for s in fails)
    finally:
        history.close()


class ProbeExecutor:
    """Looks at the history through its own connection at the moment each apply launches."""

    observed: list[tuple[str, list[tuple[str, str]], dict[str, str]]] = []
    db: Path

    def __init__(self, spec, estate, clock, resources):
        pass

    def describe(self, job):
        return f"probe {job.target}"

    async def apply(self, job, output):
        conn = sqlite3.connect(self.db)
        try:
            applies = conn.execute("SELECT target, outcome FROM applies ORDER BY id").fetchall()
            ledger = dict(conn.execute("SELECT target, version FROM ledger ORDER BY id"))
        finally:
            conn.close()
        ProbeExecutor.observed.append((job.target, applies, ledger))
        for i in range(TAIL_LINES + 5):
            output("stdout", f"{job.target} line {i}")
        await asyncio.sleep(0)
        return ApplyResult(True)

    async def close(self):
        pass


@pytest.mark.timeout(60)
async def test_an_apply_is_committed_as_started_before_it_launches_and_finished_after(tmp_path):
    estate = sample_estate(tmp_path)
    ProbeExecutor.observed = []
    ProbeExecutor.db = estate.history_path
    seen, rollout_id, outcome = await run_recorded(
        estate,
        "postgres-operator@2.0.1",
        approve=True,
        until_wave=2,
        executor_factory=ProbeExecutor,
    )
    assert outcome == "stopped"
    assert len(ProbeExecutor.observed) == 14  # waves 1 and 2
    for target, applies, ledger in ProbeExecutor.observed:
        # Another process sees this apply as started already (committed, not buffered) …
        assert (target, "started") in applies
        # … and every apply that finished earlier as finished, with its ledger entry.
        finished_before = [t for t, o in applies if o == "ok"]
        assert all(ledger[t] == "2.0.1" for t in finished_before)
    history = History.open(estate.history_path, create=False)
    try:
        tails = {a["target"]: a["output_tail"].splitlines() for a in history.applies(rollout_id)}
        assert tails["eph-101"] == [f"stdout: eph-101 line {i}" for i in range(5, TAIL_LINES + 5)]
    finally:
        history.close()


@pytest.mark.timeout(30)
async def test_output_is_batched_and_reaches_the_file_without_a_durable_event(tmp_path):
    history = History.open(tmp_path / "h.db")
    rollout_id = history.create_rollout(
        estate="e", module="m", version="2", from_versions="1", actor="a", host="h",
        plan={"waves": []}, started=time.time(),
    )  # fmt: skip
    recorder = Recorder(history, rollout_id, "m")
    bus = EventBus()
    bus.listen(recorder)
    reader = sqlite3.connect(tmp_path / "h.db")

    def visible() -> int:
        return reader.execute("SELECT COUNT(*) FROM events").fetchone()[0]

    try:
        for i in range(10):
            bus.emit(ApplyOutput, target="t", stream="stdout", line=f"line {i}")
        assert visible() == 0  # buffered: no transaction per output line
        deadline = time.monotonic() + 10
        while visible() < 10:  # the flush timer writes them shortly
            assert time.monotonic() < deadline, "buffered events never reached the file"
            await asyncio.sleep(0.02)
        # A full buffer is written at once, without waiting for the timer.
        for i in range(BATCH_SIZE):
            bus.emit(ApplyOutput, target="t", stream="stdout", line=f"more {i}")
        assert visible() == 10 + BATCH_SIZE
        # A durable event writes what is buffered before it, in one transaction.
        bus.emit(ApplyOutput, target="t", stream="stdout", line="last")
        bus.emit(WaveStarted, wave=1, channel="c", name="c 1/1", targets=("t",))
        assert visible() == 10 + BATCH_SIZE + 2
        assert [e.seq for e in history.events(rollout_id)] == list(range(1, BATCH_SIZE + 13))
    finally:
        recorder.flush()
        reader.close()
        history.close()


@pytest.mark.timeout(30)
async def test_an_apply_start_and_finish_commit_what_was_buffered_with_them(tmp_path):
    """Group commit: the starts (and the finishes) of one turn of the event loop are one
    transaction with every row buffered before them — their own event rows included — at the
    loop's next turn; :meth:`Recorder.recorded` is what an apply awaits before it launches."""
    history = History.open(tmp_path / "h.db")
    rollout_id = history.create_rollout(
        estate="e", module="m", version="2", from_versions="1", actor="a", host="h",
        plan={"waves": []}, started=time.time(),
    )  # fmt: skip
    history.db.group_commit = True  # PostgreSQL's way (a file writes an apply's rows alone)
    recorder = Recorder(history, rollout_id, "m")
    bus = EventBus()
    bus.listen(recorder)
    reader = sqlite3.connect(tmp_path / "h.db")
    commits = 0
    transaction = history.db.transaction

    def counted():  # type: ignore[no-untyped-def]
        nonlocal commits
        commits += 1
        return transaction()

    history.db.transaction = counted  # type: ignore[method-assign]

    def kinds() -> list[str]:
        return [r[0] for r in reader.execute("SELECT kind FROM events ORDER BY seq")]

    def applies() -> list[tuple]:
        return reader.execute(
            "SELECT target, outcome, output_tail FROM applies ORDER BY id"
        ).fetchall()

    def common(target: str) -> dict:
        return {"wave": 1, "target": target, "version": "2", "from_version": "1", "action": "apply"}

    try:
        bus.emit(ApplyOutput, target="u", stream="stdout", line="another target's line")
        bus.emit(ApplyStarted, **common("t"), command="deploy")
        bus.emit(ApplyStarted, **common("u"), command="deploy")
        waiting = recorder.recorded(True)
        assert waiting is not None and commits == 0  # queued, not yet durable
        assert kinds() == [] and recorder.unfinished == {}
        await waiting
        assert commits == 1  # both starts, and the line before them, in one transaction
        assert kinds() == ["apply_output", "apply_started", "apply_started"]
        assert applies() == [("t", "started", None), ("u", "started", None)]
        assert recorder.unfinished == {"t": None, "u": None}
        assert recorder.recorded(True) is None  # nothing queued: durable already
        bus.emit(ApplyOutput, target="t", stream="stdout", line="done")
        bus.emit(ApplyFinished, **common("t"), outcome="ok", reason="", duration=0.5)
        bus.emit(ApplyOutput, target="u", stream="stdout", line="broke")
        bus.emit(ApplyFinished, **common("u"), outcome="failed", reason="x", duration=0.5)
        waiting = recorder.recorded(False)
        assert waiting is not None
        await waiting
        assert commits == 2
        assert kinds()[3:] == ["apply_output", "apply_finished"] * 2
        # Each finish found its row by target (no id read back), with its own output's tail.
        assert applies() == [("t", "ok", "stdout: done"), ("u", "failed", "stdout: broke")]
        assert reader.execute("SELECT target, version FROM ledger").fetchall() == [("t", "2")]
        assert recorder.unfinished == {}
    finally:
        recorder.flush()
        reader.close()
        history.close()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("taken_over", [False, True])
def test_an_apply_checks_the_lease_right_before_it_launches(tmp_path, taken_over):
    """A driver stopped after its apply's start committed (SIGSTOP, a suspended laptop — during
    an orphan scan, a plan, a connection) may have been taken over meanwhile, and the new holder
    re-runs that apply: right before the launch the lease is checked again, and an apply of a
    process that lost it is never launched (LeaseLost; nothing more is written)."""
    from sluice.engine.store.lease import LeaseLost

    estate = sample_estate(tmp_path)
    session = Session.open(estate)
    try:
        rollout = session.new_rollout(
            session.plan("postgres-operator", "2.0.1"), clock=Clock(0), interactive=False
        )
        recorder = Recorder(session.history, rollout.rollout_id, "postgres-operator")
        recorder(
            ApplyStarted(
                seq=1, ts=time.time(), wave=1, target="eph-101", version="2.0.1",
                from_version="2.0.0", action="apply",
            )
        )  # fmt: skip
        assert "eph-101" in recorder.unfinished  # committed, under the lease
        if taken_over:
            other = sqlite3.connect(estate.history_path)
            other.execute("UPDATE lease SET epoch = epoch + 1, host = 'elsewhere', pid = 1")
            other.commit()
            other.close()
            with pytest.raises(LeaseLost):
                recorder.may_launch()
            assert recorder.lost is not None
        else:
            recorder.may_launch()  # still ours: it launches
            assert recorder.lost is None
    finally:
        session.close()
