"""A console watching an estate driven elsewhere, on a PostgreSQL history: it is woken by the
driver's NOTIFY on each commit (no 1 s polling) and follows the rollout target by target."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

import pytest
from tui_support import SAMPLE, FrozenClock, until

from sluice.engine.model.estate import load_estate
from sluice.engine.rollout.events import ApplyFinished
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
    driver = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, text=True)
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

            await until(pilot, all_seen, timeout=120)
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
        watching.close()
    lags = [seen[name] - finished[name] for name in wave]
    print(
        f"console updated {statistics.median(lags) * 1000:.0f} ms (median; max "
        f"{max(lags) * 1000:.0f} ms) after the driver's apply finished, {len(lags)} targets"
    )
    assert set(finished) == set(wave)  # every apply the driver finished, the console showed
