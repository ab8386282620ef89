"""``compare = "mann-whitney"`` against a real Prometheus on 127.0.0.1 (backfilled, promtool).

The pre-wave pool is the series over ``baseline_window`` (PrometheusCheck.baseline_series); a
rollout whose check source is the real PrometheusCheck fails the wave whose latency shifted +30 %
(never above ``max``) and passes the one that only wobbles.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import PrometheusServer, Series, ServerUnavailable, in_ci, start_prometheus

from sluice.engine.checks.prometheus import PrometheusCheck
from sluice.engine.model.plan import make_plan
from sluice.engine.rollout.events import GateEvaluated, SampleTaken, SoakStarted
from sluice.engine.rollout.options import RolloutOptions
from sluice.engine.rollout.orchestrator import Rollout
from sluice.engine.support.clock import Clock

sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))
from rollout_helpers import Events, build_estate, channel  # noqa: E402

STEP = 15
T0 = float(int(time.time()) // 60 * 60 - 7200)
METRIC = "sluice_shift_p99_seconds"


def _wobble(i: int) -> float:
    return 0.004 * ((i * 7) % 5 - 2)  # -0.008 … +0.008, deterministic


def _series(env: str, after: float) -> Series:
    before = [(T0 + i * STEP, 0.10 + _wobble(i)) for i in range(41)]  # T0 … T0+600
    later = [(T0 + 600 + i * STEP, after + _wobble(i + 3)) for i in range(1, 41)]
    return Series(METRIC, {"env": env}, before + later)


@pytest.fixture(scope="module")
def prom() -> Iterator[PrometheusServer]:
    try:
        server = start_prometheus(series=[_series("shift", 0.13), _series("noise", 0.10)])
    except ServerUnavailable as exc:
        if in_ci():
            pytest.fail(f"CI=true and prometheus unavailable: {exc}", pytrace=False)
        pytest.skip(f"prometheus unavailable: {exc}")
    yield server
    server.stop()


class StageClock(Clock):
    """Engine timers take no time; queries are evaluated at ``at`` (moved by the test)."""

    def __init__(self, at: float):
        super().__init__(0.0)
        self.at = at

    def now(self) -> float:  # type: ignore[override]
        return self.at


@pytest.mark.integration
@pytest.mark.timeout(90)
async def test_a_shift_fails_and_noise_passes_on_real_prometheus(prom, tmp_path: Path) -> None:
    estate = build_estate(
        tmp_path,
        channels=[channel("canary", soak="2m", checks=["p99"])],
        targets={t: {"channel": "canary", "executor": "sim"} for t in ("shift", "noise")},
        checks={
            "p99": {
                "source": "prometheus", "url": prom.url, "query": METRIC + '{env="{target}"}',
                "max": 0.25, "max_increase": "20%", "compare": "mann-whitney",
                "baseline_window": "10m", "interval": "15s",
            }
        },
    )  # fmt: skip
    clock = StageClock(T0 + 600)  # the baselines: the ten minutes before the change

    def factory(spec: Any, estate: Any, _clock: Any, resources: Any) -> PrometheusCheck:
        return PrometheusCheck(spec, estate, clock, resources)

    rollout = Rollout(
        estate, make_plan(estate, "op", "2.0"), clock=clock, options=RolloutOptions(interactive=False), actor="t",
        check_factory=factory,
    )  # fmt: skip
    events = Events(rollout)

    def soak_moves_time(event: Any) -> None:
        if isinstance(event, SoakStarted):
            clock.at = T0 + 900  # five minutes after the change
        elif isinstance(event, SampleTaken) and event.phase == "soak":
            clock.at += STEP / 2  # two targets a round: one step per round

    rollout.bus.listen(soak_moves_time)
    outcome = await rollout.run()

    gate = events.of(GateEvaluated, wave=1)[0]
    pre = [s for s in events.of(SampleTaken, phase="baseline") if s.target == "shift"]
    assert len(pre) == 1 + 41  # the median, then the window's samples (every 15 s for 10 m)
    shift = gate.checks["p99"]["targets"]["shift"]
    noise = gate.checks["p99"]["targets"]["noise"]
    assert max(v for v in shift["values"] if v is not None) < 0.25  # never over the limit
    assert shift["test"]["n_baseline"] == 41 and shift["test"]["p"] < 0.05
    assert noise["test"]["decidable"] and noise["test"]["p"] >= 0.05
    assert all(o == "pass" for o in noise["outcomes"])
    assert gate.verdict == "failed" and outcome.outcome == "halted"
    assert any("p99 on shift" in r and "shifted higher by more than 20%" in r for r in gate.reasons)
    assert not any("on noise" in r for r in gate.reasons)
