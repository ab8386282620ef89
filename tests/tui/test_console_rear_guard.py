"""The console's view of a rear guard: "watching … left" on a passed wave, its sparklines moving."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))
from rollout_helpers import MODULE, Events, build_estate, channel, make_rollout, members  # noqa: E402

from sluice.engine.rollout.events import WatchStarted, WaveFinished  # noqa: E402
from sluice.tui.model import ConsoleModel  # noqa: E402
from sluice.tui.themes import Palette  # noqa: E402
from sluice.tui.widgets.wave_progress import gate_text  # noqa: E402

pytestmark = pytest.mark.timeout(60)


async def test_a_watched_wave_says_watching_and_its_series_grows(tmp_path: Path) -> None:
    estate = build_estate(
        tmp_path,
        channels=[
            channel("dev", soak="5s", checks=["latency"], watch_after="30m"),
            channel("prod", soak="20s", checks=["latency"]),
        ],
        targets={**members("dev", 1), **members("prod", 2)},
        checks={"latency": {"source": "simulated", "metric": "p99_latency", "interval": "1m", "max": 0.25}},
        simulation={"seed": 1, "regressions": [
            {"module": MODULE, "version": "2.0", "metric": "p99_latency", "factor": 4.0,
             "channels": ["dev"], "after": "12m"}]},
    )  # fmt: skip
    rollout = make_rollout(estate)
    events = Events(rollout)
    await rollout.run()
    start = events.of(WatchStarted, wave=1)[0]
    upto = events.all.index(events.of(WaveFinished, wave=1)[0])
    now = [start.ts]
    model = ConsoleModel(estate, now=lambda: now[0])
    model.apply_all(events.all[: upto + 1])
    # Shown in real seconds: with the engine clock at 0 the watch takes none, so fake the
    # scaled length the way a live run at time-scale 1 would report it.
    model.waves[1].watch_seconds = 30 * 60
    now[0] = start.ts + 12 * 60
    text = gate_text(model, model.waves[1], Palette({})).plain
    assert "gate passed · watching 18m00s left" in text, text
    soak_values = len(model.series[(1, "latency", "dev-1")].values)
    model.apply_all(events.all[upto + 1 :])
    # The watch's samples land in wave 1's series: its sparkline keeps moving.
    assert len(model.series[(1, "latency", "dev-1")].values) > soak_values
    # It regressed 12 m in: the wave says so, and no more "watching".
    text = gate_text(model, model.waves[1], Palette({})).plain
    assert "REGRESSED after it passed" in text and "watching" not in text
