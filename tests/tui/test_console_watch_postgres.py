"""A console watching an estate driven elsewhere, on a PostgreSQL history: it is woken by the
driver's NOTIFY on each commit (no 1 s polling) and follows the rollout target by target."""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time

import pytest
from tui_support import SAMPLE, FrozenClock, until

from sluice.engine.model.estate import load_estate
from sluice.engine.rollout.events import ApplyFinished, EventBus, WaveStarted
from sluice.engine.store.history import History
from sluice.engine.store.recorder import Recorder
from sluice.tui.app import SluiceApp
from sluice.tui.driver import RolloutDriver, open_session

pytestmark = [pytest.mark.timeout(180), pytest.mark.integration]


async def test_a_console_watching_a_postgresql_history_follows_each_commit(tmp_path, history_url):
    path = tmp_path / "estate.toml"
    path.write_text(
        SAMPLE.read_text().replace('history = ".sluice/history.db"', f'history = "{history_url}"')
    )
    estate = load_estate(path)
    watching = open_session(estate, drive=False)
    app = SluiceApp(
        RolloutDriver(watching, FrozenClock(), read_only="watching"), offer_resume=False
    )
    seen: dict[str, float] = {}
    command = [
        sys.executable, "-m", "sluice.cli", "run", str(path), "postgres-operator@2.0.1",
        "--headless", "--time-scale", "0.05", "--until-wave", "1",
    ]  # fmt: skip
    printed = (tmp_path / "driver.out").open("w")  # a file, not a pipe no one reads until the end
    driver = subprocess.Popen(command, cwd=tmp_path, stdout=printed, text=True)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            wave: list[str] = []

            def all_seen() -> bool:
                if not wave and app.model.waves:
                    wave.extend(app.model.waves[1].targets)
                for name in wave:
                    target = app.model.targets.get(name)
                    if name not in seen and target is not None and target.status == "ok":
                        seen[name] = time.time()
                return bool(wave) and len(seen) == len(wave)

            try:
                await until(pilot, all_seen, timeout=120)
            except AssertionError as exc:  # say what the driver did
                printed.flush()
                said = (tmp_path / "driver.out").read_text()[-2000:]
                raise AssertionError(
                    f"{exc}; driver exit {driver.poll()}, printed:\n{said}"
                ) from None
        assert driver.wait(timeout=60) == 4  # stopped after wave 1, as asked
        [record] = watching.history.rollouts()
        finished = {
            e.target: e.ts
            for e in watching.history.events(record.id)
            if isinstance(e, ApplyFinished) and e.outcome == "ok"
        }
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.communicate()
        printed.close()
        watching.close()
    print(f"the driver printed {(tmp_path / 'driver.out').stat().st_size} bytes")
    lags = [seen[name] - finished[name] for name in wave]
    print(
        f"console updated {statistics.median(lags) * 1000:.0f} ms (median; max "
        f"{max(lags) * 1000:.0f} ms) after the driver's apply finished, {len(lags)} targets"
    )
    assert set(finished) == set(wave)  # every apply the driver finished, the console showed


async def test_a_watching_console_reads_a_commit_without_waiting_for_its_own_loop_or_a_tick(
    tmp_path, history_url, monkeypatch
):
    """The mechanism behind "within 200 ms": the follower is woken by the writer's NOTIFY and
    reads in its own thread — while the console's event loop is held (painting, under load) —
    and the console folds the event in at its next turn, with no poll tick in between (the poll
    interval is an hour here)."""
    import sluice.tui.screens.console as console

    monkeypatch.setattr(console, "WATCH_SECONDS", 3600.0)
    path = tmp_path / "estate.toml"
    path.write_text(
        SAMPLE.read_text().replace('history = ".sluice/history.db"', f'history = "{history_url}"')
    )
    estate = load_estate(path)
    writer = History.open(history_url)
    rollout_id = writer.create_rollout(
        estate="acme-platform", module="postgres-operator", version="2.0.1",
        from_versions="2.0.0", actor="other", host="elsewhere", plan={"waves": []},
        started=time.time(),
    )  # fmt: skip
    recorder = Recorder(writer, rollout_id, "postgres-operator")
    bus = EventBus()
    bus.listen(recorder)
    watching = open_session(estate, drive=False)
    app = SluiceApp(
        RolloutDriver(watching, FrozenClock(), read_only="watching"), offer_resume=False
    )
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            follower = app.console_screen.follower
            await until(pilot, lambda: follower is not None and follower.batches == 0)
            assert follower is not None
            await until(pilot, lambda: follower.woken_by_commit == 0 and _listening(history_url))
            # A wave starts elsewhere: committed at once (a durable event), NOTIFY sent.
            bus.emit(WaveStarted, wave=1, channel="ephemeral", name="ephemeral 1/1", targets=())
            # Hold the console's loop (no frame, no timer, no worker runs) until the follower
            # has read it in its own thread.
            deadline = time.monotonic() + 30
            while follower.batches == 0:
                assert time.monotonic() < deadline, "the follower did not read the commit"
                threading.Event().wait(0.005)  # the loop stays blocked: this is the point
            assert follower.woken_by_commit == 1  # woken by the commit, not a poll timeout
            assert app.model.current_wave is None  # not folded in yet: the loop was held
            await until(pilot, lambda: app.model.current_wave == 1, timeout=10)
    finally:
        recorder.flush()
        writer.close()
        watching.close()


def _listening(url: str) -> bool:
    """Whether a watcher's LISTEN connection is up (another session listens on the channel)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND query LIKE 'LISTEN%'"
        ).fetchone()
    return bool(rows and rows[0])
