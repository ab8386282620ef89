"""The history on a real PostgreSQL server: the same records, the same lease, as the SQLite file."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from sluice.engine.app.session import LeaseHeld, Session
from sluice.engine.model.estate import load_estate
from sluice.engine.store.history import History, HistoryError
from sluice.engine.support.clock import Clock

SAMPLE = Path(__file__).resolve().parents[2] / "sample_estate.toml"


@pytest.fixture
def estate(tmp_path, history_url):
    text = SAMPLE.read_text().replace(
        'history = ".sluice/history.db"', f'history = "{history_url}"'
    )
    (tmp_path / "estate.toml").write_text(text)
    return load_estate(tmp_path / "estate.toml")


async def test_a_rollout_is_recorded_in_postgresql_as_in_sqlite(estate):
    assert estate.history_url is not None
    session = Session.open(estate)
    try:
        assert session.history.db.kind == "postgresql"
        plan = session.plan("postgres-operator", "2.0.1")
        rollout = session.new_rollout(plan, clock=Clock(0), interactive=False, approve=True)
        outcome = await session.drive(rollout)
        assert outcome.outcome == "done"
        ledger = session.history.ledger("postgres-operator")
        assert set(ledger.values()) == {"2.0.1"} and len(ledger) == len(estate.targets)
        [record] = session.history.rollouts()
        assert record.outcome == "done" and record.waves_done == record.waves_total
        events = session.history.events(record.id)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert events[-1].kind == "rollout_finished"
    finally:
        session.close()
    history = History.open(estate.history, create=False)
    try:
        assert history.db.execute("SELECT COUNT(*) FROM lease").fetchone()[0] == 0
        log = [r["action"] for r in history.db.query("SELECT action FROM lease_log ORDER BY rowid")]
        assert log == ["acquire", "release"]
    finally:
        history.close()


def test_a_second_driver_on_another_host_is_refused_naming_the_holder(estate, monkeypatch):
    monkeypatch.setenv("SLUICE_HOST", "machine-a")
    first = Session.open(estate)
    try:
        monkeypatch.setenv("SLUICE_HOST", "machine-b")
        with pytest.raises(LeaseHeld, match=r"@machine-a \(pid \d+"):
            Session.open(estate)
        watcher = Session.open(estate, drive=False)  # watching is fine
        watcher.close()
    finally:
        first.close()


def test_an_unreachable_server_is_one_line(tmp_path, postgres):
    url = f"postgresql://sluice:secret@127.0.0.1:{postgres.port + 1}/nothing"
    with pytest.raises(HistoryError) as info:
        History.open(url)
    message = str(info.value)
    assert "cannot connect" in message and "secret" not in message and "\n" not in message


async def test_a_watcher_hears_each_committed_batch_without_polling(estate):
    """The driver NOTIFYs on each commit; a watcher (its own connection) LISTENs and reads."""
    from sluice.engine.rollout.events import Notice

    driver = Session.open(estate)
    watcher = History.open(estate.history, create=False)
    try:
        assert await watcher.changed(0) is False  # listening from here on; nothing written yet
        plan = driver.plan("postgres-operator", "2.0.1")
        rollout = driver.new_rollout(plan, clock=Clock(0), interactive=False)
        assert await watcher.changed(30) is True  # the rollout row's commit woke it
        [record] = watcher.unfinished()
        waiting = asyncio.ensure_future(watcher.changed(30))
        await asyncio.sleep(0)  # the waiter is listening
        started = time.monotonic()
        rollout.bus.emit(Notice, level="info", message="hello from the driver")  # batched
        assert await waiting is True
        latency = time.monotonic() - started
        events = watcher.events(record.id)
        assert [e.message for e in events if isinstance(e, Notice)] == ["hello from the driver"]
        print(f"watcher woken {latency * 1000:.0f} ms after the driver's event")
    finally:
        watcher.close()
        driver.close()


def test_the_password_comes_from_the_environment_and_is_never_recorded_or_shown(
    tmp_path, postgres, monkeypatch
):
    import subprocess
    import sys

    database = postgres.new_database().rsplit("/", 1)[1]
    url = f"postgresql://sluice:{{env.SLUICE_TEST_PW}}@127.0.0.1:{postgres.port}/{database}"
    estate = tmp_path / "estate.toml"
    estate.write_text(
        SAMPLE.read_text().replace('history = ".sluice/history.db"', f'history = "{url}"')
    )
    command = [sys.executable, "-m", "sluice.cli"]
    env = {**__import__("os").environ, "SLUICE_TEST_PW": "hunter2-secret"}
    unset = subprocess.run([*command, "history", str(estate)], capture_output=True, text=True)
    assert unset.returncode == 2 and "{env.SLUICE_TEST_PW} is not set" in unset.stderr
    ran = subprocess.run(
        [*command, "run", str(estate), "postgres-operator@2.0.1", "--headless", "--time-scale", "0"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert ran.returncode == 4, ran.stdout + ran.stderr  # the first manual gate, headless
    listed = subprocess.run(
        [*command, "history", str(estate)], capture_output=True, text=True, env=env
    )
    assert listed.returncode == 0 and ":***@127.0.0.1" in listed.stdout
    history = History.open(f"postgresql://sluice@127.0.0.1:{postgres.port}/{database}")
    try:
        for table in ("rollouts", "event_log", "applies", "lease_log", "operator_actions"):
            for row in history.db.execute(f"SELECT * FROM {table}").fetchall():
                assert "hunter2" not in repr(row), table
    finally:
        history.close()
    assert "hunter2" not in ran.stdout + ran.stderr + listed.stdout
