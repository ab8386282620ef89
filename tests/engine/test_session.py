"""Sessions: the one-driver lease, plans from the ledger, resume and recorded rollbacks."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sluice.engine.app.session import (
    LEASE_TIMEOUT,
    LeaseHeld,
    ResumeError,
    Session,
    plan_from_record,
)
from sluice.engine.model.estate import load_estate
from sluice.engine.rollout.events import (
    ApplyFinished,
    ApplyStarted,
    Notice,
    SampleTaken,
    WaveStarted,
)
from sluice.engine.store.history import History
from sluice.engine.support.clock import Clock

SAMPLE = Path(__file__).resolve().parents[2] / "sample_estate.toml"
MODULE = "postgres-operator"


@pytest.fixture
def estate(tmp_path):
    shutil.copy(SAMPLE, tmp_path / "estate.toml")
    return load_estate(tmp_path / "estate.toml")


@pytest.fixture
def other_process():
    """A live process that is not us, stopped by its pid at the end."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def plant_lease(estate, *, pid: int, host: str | None = None, age: float = 0.0, user="someone"):
    """Write a lease row as another driver would have left it."""
    history = History.open(estate.history_path)
    try:
        now = time.time() - age
        with history.db.atomic():
            history.db.execute(
                "INSERT OR REPLACE INTO lease (estate, user, host, pid, acquired, heartbeat) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [estate.name, user, host or socket.gethostname(), pid, now, now],
            )
    finally:
        history.close()


def lease_log(estate) -> list[dict]:
    history = History.open(estate.history_path)
    try:
        return list(history.db.query("SELECT * FROM lease_log ORDER BY rowid"))
    finally:
        history.close()


async def drive(session: Session, spec: str, **options):
    module, version = spec.split("@")
    rollout = session.new_rollout(
        session.plan(module, version), clock=Clock(0), interactive=False, **options
    )
    outcome = await session.drive(rollout)
    return rollout, outcome


# --- the lease --------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_the_lease_is_taken_recorded_and_released(estate):
    session = Session.open(estate)
    row = session.history.db.execute("SELECT user, host, pid FROM lease").fetchone()
    assert row == (session.user, socket.gethostname(), session.pid)
    before = session.history.db.execute("SELECT heartbeat FROM lease").fetchone()[0]
    session.heartbeat()
    assert session.history.db.execute("SELECT heartbeat FROM lease").fetchone()[0] >= before
    session.close()
    assert [e["action"] for e in lease_log(estate)] == ["acquire", "release"]
    history = History.open(estate.history_path)
    try:
        assert history.db.execute("SELECT COUNT(*) FROM lease").fetchone()[0] == 0
    finally:
        history.close()


@pytest.mark.timeout(30)
def test_a_watching_session_takes_no_lease(estate, other_process):
    plant_lease(estate, pid=other_process, user="ann")
    session = Session.open(estate, drive=False)
    session.close()
    assert lease_log(estate) == []


@pytest.mark.timeout(30)
def test_a_live_holder_on_this_host_keeps_the_lease_and_is_named(estate, other_process):
    plant_lease(estate, pid=other_process, user="ann")
    with pytest.raises(LeaseHeld) as refused:
        Session.open(estate)
    message = str(refused.value)
    assert f"ann@{socket.gethostname()}" in message and f"pid {other_process}" in message
    assert "last heartbeat" in message
    assert lease_log(estate) == []  # a refusal changes nothing


@pytest.mark.timeout(30)
def test_a_fresh_lease_from_another_host_is_respected(estate):
    plant_lease(estate, pid=4242, host="elsewhere.example", user="bob", age=LEASE_TIMEOUT / 3)
    with pytest.raises(LeaseHeld, match=r"bob@elsewhere\.example \(pid 4242"):
        Session.open(estate)


@pytest.mark.timeout(30)
async def test_the_lease_of_a_dead_process_on_this_host_is_taken_over_and_recorded(estate):
    pid = dead_pid()
    plant_lease(estate, pid=pid, user="ann")
    session = Session.open(estate)
    try:
        assert session.takeover is not None and f"pid {pid}" in session.takeover
        assert "holder process is gone" in session.takeover
        [log] = lease_log(estate)
        assert log["action"] == "takeover"
        assert f"ann@{socket.gethostname()} pid {pid}" in log["previous"]
        assert log["holder"] == f"{session.user}@{session.host} pid {session.pid}"
        # The takeover is also told on the rollout's stream (and so recorded with it).
        rollout, outcome = await drive(session, f"{MODULE}@2.0.1", until_wave=1)
        notices = [e for e in session.history.events(rollout.rollout_id) if isinstance(e, Notice)]
        assert any("took over the lease" in n.message for n in notices)
    finally:
        session.close()


@pytest.mark.timeout(30)
def test_a_silent_lease_is_taken_over_and_recorded(estate):
    plant_lease(estate, pid=4242, host="elsewhere.example", user="bob", age=LEASE_TIMEOUT + 5)
    session = Session.open(estate)
    try:
        assert session.takeover is not None and "no heartbeat for" in session.takeover
    finally:
        session.close()
    log = lease_log(estate)
    assert [e["action"] for e in log] == ["takeover", "release"]
    assert "bob@elsewhere.example pid 4242 (no heartbeat for" in log[0]["previous"]


@pytest.mark.timeout(30)
def test_closing_after_a_takeover_leaves_the_new_holders_lease_alone(estate):
    session = Session.open(estate)
    with session.history.db.atomic():  # another host took the lease while we were silent
        session.history.db.execute(
            "UPDATE lease SET host = 'elsewhere.example', pid = 4242, user = 'bob'"
        )
    session.heartbeat()  # renews nothing of ours
    session.close()
    assert [e["action"] for e in lease_log(estate)] == ["acquire", "lost"]
    with pytest.raises(LeaseHeld, match="bob@elsewhere.example"):
        Session.open(estate)


# --- plans and rollouts ------------------------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_plans_read_the_ledger_after_a_rollout(estate):
    session = Session.open(estate)
    try:
        assert all(t.from_version == "1.12.0" for t in session.plan(MODULE, "2.0.1").targets)
        _, outcome = await drive(session, f"{MODULE}@2.0.1", until_wave=2)
        assert outcome.outcome == "stopped"
        plan = session.plan(MODULE, "2.0.1")
        first_two = {t.name for w in plan.waves[:2] for t in w.targets}
        assert all(t.noop for t in plan.targets if t.name in first_two)
        assert not any(t.noop for t in plan.targets if t.name not in first_two)
        assert session.current_versions("pgbouncer") == {}
    finally:
        session.close()


@pytest.mark.timeout(60)
async def test_resume_continues_after_the_last_finished_wave_without_reapplying(estate):
    session = Session.open(estate)
    try:
        first, outcome = await drive(session, f"{MODULE}@2.0.1", until_wave=3)
        assert outcome.outcome == "stopped"
        record = session.resumable()
        assert record.id == first.rollout_id
        resumed = session.resume_rollout(
            record, clock=Clock(0), interactive=False, approve=True, until_wave=5
        )
        assert resumed.start_wave == 4 and resumed.resumed
        seen = []
        resumed.bus.listen(seen.append)
        assert (await session.drive(resumed)).outcome == "stopped"
        applied = [e.target for e in seen if isinstance(e, ApplyStarted)]
        waves_4_5 = [t.name for w in resumed.plan.waves[3:5] for t in w.targets]
        assert applied == waves_4_5  # waves 1-3 were not touched again
        events = session.history.events(record.id)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        again = session.resume_rollout(
            session.resumable(record.id), clock=Clock(0), interactive=False, approve=True
        )
        assert (await session.drive(again)).outcome == "done"
        with pytest.raises(ResumeError, match="no rollout of this estate"):
            session.resumable()
        with pytest.raises(ResumeError, match="ended done"):
            session.resumable(record.id)
        with pytest.raises(ResumeError, match="no rollout #99"):
            session.resumable(99)
        applies = session.history.applies(record.id)
        assert len(applies) == len({a["target"] for a in applies}) == len(estate.targets)
    finally:
        session.close()


def crash_mid_wave(session: Session, spec: str, started: list[str], finished: list[str]) -> int:
    """Leave the history as a process killed mid-wave 1 would: applies started, never finished."""
    module, version = spec.split("@")
    rollout = session.new_rollout(session.plan(module, version), clock=Clock(0))
    wave = rollout.plan.waves[0]
    bus = rollout.bus
    bus.emit(WaveStarted, wave=1, channel=wave.channel.name, name=wave.name, targets=())
    for name in started:
        bus.emit(
            ApplyStarted,
            wave=1,
            target=name,
            version=version,
            from_version="1.12.0",
            action="apply",
        )
    for name in finished:
        bus.emit(
            ApplyFinished,
            wave=1,
            target=name,
            version=version,
            from_version="1.12.0",
            action="apply",
            outcome="ok",
        )
    return rollout.rollout_id


@pytest.mark.timeout(60)
@pytest.mark.parametrize("reapply", [True, False])
async def test_applies_of_unknown_outcome_are_reapplied_or_left(estate, reapply):
    session = Session.open(estate)
    try:
        rollout_id = crash_mid_wave(
            session, f"{MODULE}@2.0.1", ["eph-101", "eph-102", "eph-103"], ["eph-101"]
        )
        record = session.resumable()
        assert record.id == rollout_id and record.outcome == "running"
        resumed = session.resume_rollout(
            record, clock=Clock(0), interactive=False, until_wave=1, reapply_unknown=reapply
        )
        assert resumed.targets["eph-101"].status == "ok"
        assert resumed.targets["eph-102"].status == "unknown"
        seen = []
        resumed.bus.listen(seen.append)
        await session.drive(resumed)
        warning = next(e for e in seen if isinstance(e, Notice))
        assert "eph-102, eph-103" in warning.message
        applied = {e.target for e in seen if isinstance(e, ApplyStarted)}
        wave_1 = {t.name for t in resumed.plan.waves[0].targets}
        assert "eph-101" not in applied  # finished: never run again
        if reapply:
            assert applied == wave_1 - {"eph-101"}
        else:
            assert applied == wave_1 - {"eph-101", "eph-102", "eph-103"}
            assert resumed.targets["eph-102"].status == "unknown"
    finally:
        session.close()


@pytest.mark.timeout(60)
async def test_a_rollback_returns_targets_to_the_ledger_before_the_rollout(estate):
    session = Session.open(estate)
    try:
        first, _ = await drive(session, f"{MODULE}@2.0.0")  # halts at dev: eph + dev at 2.0.0
        second, _ = await drive(session, f"{MODULE}@2.0.1", until_wave=2)
        source = session.history.rollout(second.rollout_id)
        dev = [t.name for t in second.plan.waves[1].targets]
        back = session.rollback_rollout(source, dev + ["stg-eu-west-1-a"], clock=Clock(0))
        assert back.plan.waves[0].name == "dev 1/1"
        assert (await session.drive(back)).outcome == "done"
        ledger = session.history.ledger(MODULE)
        assert all(ledger[t] == "2.0.0" for t in dev)  # as before #2, not the initial 1.12.0
        assert "stg-eu-west-1-a" not in ledger  # never applied: nothing to do
        record = session.history.rollout(back.rollout_id)
        assert record.kind == "rollback" and record.plan["rollback_of"] == second.rollout_id
        assert (record.from_versions, record.version, record.waves_done) == ("2.0.1", "2.0.0", 1)
        applies = session.history.applies(back.rollout_id)
        assert {(a["target"], a["action"], a["outcome"]) for a in applies} == {
            (t, "rollback", "ok") for t in dev
        }
        # A rollback is not something to resume.
        with pytest.raises(ResumeError):
            session.resumable(back.rollout_id)
        assert session.history.rollout(first.rollout_id).outcome == "halted"
    finally:
        session.close()


@pytest.mark.timeout(30)
def test_a_recorded_plan_rebuilds_the_same_waves(estate):
    from sluice.engine.model.plan import make_plan

    plan = make_plan(estate, MODULE, "2.0.1", {"eph-101": "2.0.1"})
    again = plan_from_record(estate, plan.to_dict())
    assert again.to_dict() == plan.to_dict()
    data = plan.to_dict()
    data["waves"][0]["targets"][0]["name"] = "gone"
    with pytest.raises(ResumeError, match="'gone'"):
        plan_from_record(estate, data)


@pytest.mark.timeout(60)
async def test_a_rollout_stopped_at_a_manual_gate_resumes_with_a_fresh_soak(estate):
    session = Session.open(estate)
    try:
        # headless, no --approve; production's entry approval counts as given (entered)
        first = session.new_rollout(
            session.plan(MODULE, "2.0.1"), clock=Clock(0), interactive=False
        )
        first.entered = frozenset({5})
        outcome = await session.drive(first)
        assert outcome.outcome == "stopped" and "awaits approval" in outcome.summary
        waves = session.history.waves(first.rollout_id)
        assert (waves[4]["number"], waves[4]["outcome"], waves[4]["verdict"]) == (
            5,
            "stopped",
            "passed",
        )
        soaked = len([s for s in session.history.samples(first.rollout_id) if s["wave"] == 5])
        resumed = session.resume_rollout(
            session.resumable(), clock=Clock(0), interactive=False, approve=True, until_wave=5
        )
        assert resumed.start_wave == 5
        seen = []
        resumed.bus.listen(seen.append)
        assert (await session.drive(resumed)).outcome == "stopped"
        assert not [e for e in seen if isinstance(e, ApplyStarted)]  # wave 5 had applied
        waves = session.history.waves(first.rollout_id)
        assert waves[4]["outcome"] == "approved" and waves[4]["finished"] is not None
        again = len([s for s in session.history.samples(first.rollout_id) if s["wave"] == 5])
        assert again == 2 * soaked  # the soak ran again from its start
        assert session.history.rollout(first.rollout_id).waves_done == 5
    finally:
        session.close()


@pytest.mark.timeout(60)
async def test_applies_cut_off_by_a_cancel_are_redone_on_resume(tmp_path):
    """Quitting the console mid-wave cancels the run: its in-flight applies must be re-applied."""
    path = tmp_path / "estate.toml"
    path.write_text(
        '[estate]\nname = "quit"\n[[channels]]\nname = "only"\nmax_parallel = 4\n'
        '[executors.sh]\nkind = "local"\napply = "echo {target} >> log; sleep 30"\n'
        '[modules.m]\nversions = ["1", "2"]\ninitial = "1"\n'
        + "".join(f'[targets.t{i}]\nchannel = "only"\nexecutor = "sh"\n' for i in range(3))
    )
    estate = load_estate(path)
    session = Session.open(estate)
    try:
        rollout = session.new_rollout(session.plan("m", "2"), clock=Clock(0), interactive=False)
        started: list[str] = []
        rollout.bus.listen(
            lambda e: started.append(e.target) if isinstance(e, ApplyStarted) else None
        )
        task = asyncio.ensure_future(session.drive(rollout))
        deadline = time.monotonic() + 30
        log = tmp_path / "log"
        # Launched, not only recorded: sluice then stops them itself (SIGTERM), and their
        # wrappers write that signal as their status — which a resume must not adopt.
        while len(started) < 3 or len(log.read_text().split() if log.exists() else []) < 3:
            assert time.monotonic() < deadline, "the applies never started"
            await asyncio.sleep(0.01)
        task.cancel()  # what quitting the console does
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        session.close()

    path.write_text(path.read_text().replace("sleep 30", "true"))
    session = Session.open(load_estate(path))
    try:
        record = session.resumable()
        resumed = session.resume_rollout(record, clock=Clock(0), interactive=False)
        assert {t.status for t in resumed.targets.values()} == {"unknown"}
        outcome = await session.drive(resumed)
        assert outcome.outcome == "done"
        assert {t.status for t in resumed.targets.values()} == {"ok"}
        assert session.history.ledger("m") == {"t0": "2", "t1": "2", "t2": "2"}
    finally:
        session.close()


@pytest.mark.timeout(60)
async def test_a_resumed_wave_compares_with_baselines_recorded_before_the_crash(estate):
    """Re-measuring a baseline after a restart would measure already-upgraded targets."""
    session = Session.open(estate)
    try:
        module, version = f"{MODULE}@2.0.1".split("@")
        rollout = session.new_rollout(session.plan(module, version), clock=Clock(0))
        wave = rollout.plan.waves[0]
        names = [t.name for t in wave.targets]
        bus = rollout.bus
        bus.emit(WaveStarted, wave=1, channel=wave.channel.name, name=wave.name, targets=())
        recorded = names[:2]  # the crash came after these two baselines were recorded
        for name in recorded:
            bus.emit(
                SampleTaken,
                wave=1,
                check="p99_latency",
                target=name,
                phase="baseline",
                value=123.5,
                baseline=None,
                outcome="baseline",
            )
        for name in names:
            bus.emit(ApplyStarted, wave=1, target=name, version=version, from_version="1.12.0")
            bus.emit(
                ApplyFinished,
                wave=1,
                target=name,
                version=version,
                from_version="1.12.0",
                action="apply",
                outcome="ok",
            )
        for recorder in session.recorders:
            recorder.flush()
        resumed = session.resume_rollout(
            session.resumable(), clock=Clock(0), interactive=False, until_wave=1
        )
        seen = []
        resumed.bus.listen(seen.append)
        await session.drive(resumed)
        baselines = {
            (e.target, e.check): e
            for e in seen
            if isinstance(e, SampleTaken) and e.phase == "baseline" and e.wave == 1
        }
        for name in recorded:
            assert baselines[(name, "p99_latency")].value == 123.5
        # Applied before the crash, no baseline recorded for this check: none is invented.
        unrecorded = baselines[(names[0], "error_rate")]
        assert unrecorded.value is None and "no baseline was recorded" in unrecorded.reason
        assert not [e for e in seen if isinstance(e, ApplyStarted)]  # nothing applied twice
    finally:
        session.close()


@pytest.mark.timeout(60)
async def test_a_rollback_whose_driver_died_ends_interrupted_at_the_next_start(estate):
    session = Session.open(estate)
    try:
        first, _ = await drive(session, f"{MODULE}@2.0.0")  # halts at dev
        source = session.history.rollout(first.rollout_id)
        target = first.plan.waves[0].targets[0].name
        back = session.rollback_rollout(source, [target], clock=Clock(0))
        assert session.history.rollout(back.rollout_id).outcome == "running"
    finally:
        session.close()  # the rollback never ran to its end: as if its process died
    after = Session.open(estate)
    try:
        record = after.history.rollout(back.rollout_id)
        assert record.outcome == "interrupted" and record.finished is not None
        assert "run `sluice rollback` again" in record.summary
        assert after.history.rollout(first.rollout_id).outcome == source.outcome  # untouched
    finally:
        after.close()
