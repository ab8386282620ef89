"""Rear-guard gates: a passed wave's checks are watched while later waves run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rollout_helpers import MODULE, Events, build_estate, channel, make_rollout, members

from sluice.engine.rollout.events import (
    ApplyStarted,
    GateEvaluated,
    Notice,
    SampleTaken,
    WatchEnded,
    WatchStarted,
)
from sluice.engine.support.clock import Clock


def _estate(tmp_path: Path, *, after: str | None, watch: str = "2m") -> Any:
    regressions = []
    if after is not None:
        regressions.append(
            {"module": MODULE, "version": "2.0", "metric": "p99_latency", "factor": 3.0,
             "channels": ["dev"], "after": after}
        )  # fmt: skip
    return build_estate(
        tmp_path,
        channels=[
            channel("dev", soak="5s", checks=["latency"], watch_after=watch),
            channel("staging", soak="20s", checks=["latency"], waves=[1, "100%"]),
            channel("prod", soak="20s", checks=["latency"]),
        ],
        targets={**members("dev", 2), **members("staging", 3), **members("prod", 3)},
        checks={
            "latency": {
                "source": "simulated",
                "metric": "p99_latency",
                "base": 0.12,
                "max": 0.25,
                "max_increase": "50%",
                "interval": "1s",
            }
        },  # fmt: skip
        simulation={"seed": 5, "regressions": regressions},
    )


async def test_a_regression_after_the_gate_passed_halts_and_names_the_wave(
    tmp_path: Path,
) -> None:
    # dev's latency triples 20 s after its targets took 2.0: after its 5 s soak passed.
    rollout = make_rollout(_estate(tmp_path, after="20s"))
    events = Events(rollout)
    outcome = await rollout.run()

    assert events.of(GateEvaluated, wave=1)[0].verdict == "passed"
    assert events.of(WatchStarted, wave=1)[0].configured == 120
    assert outcome.outcome == "halted" and outcome.exit_code == 1
    ended = events.of(WatchEnded, wave=1)
    assert [e.outcome for e in ended] == ["regressed"]
    assert 15 <= ended[0].elapsed <= 25  # about 20 s of dev running 2.0, minus its soak
    assert "rear guard: wave 1 (dev 1/1) regressed" in outcome.summary
    assert (
        "after it passed: latency " in outcome.summary and "> max 0.25 on dev-" in outcome.summary
    )
    # The watch samples are dev's (wave 1), measured while later waves ran.
    watch = events.of(SampleTaken, phase="watch")
    assert watch and all(s.wave == 1 and s.target.startswith("dev-") for s in watch)
    later = {e.wave for e in events.all if isinstance(e, ApplyStarted)}
    assert later - {1}, "later waves ran while dev was watched"
    # No apply started after the regression was seen.
    notice = next(e for e in events.of(Notice) if "rear guard" in e.message)
    assert not [e for e in events.of(ApplyStarted) if e.seq > notice.seq]
    assert rollout.waves[len(rollout.waves)].status == "pending"  # production never started


async def test_a_healthy_watch_ends_passed_and_the_rollout_waits_for_it(tmp_path: Path) -> None:
    rollout = make_rollout(_estate(tmp_path, after=None, watch="10m"))
    events = Events(rollout)
    outcome = await rollout.run()
    assert outcome.outcome == "done"
    ended = events.of(WatchEnded, wave=1)
    assert [e.outcome for e in ended] == ["passed"]
    # 10 m at a 1 s interval: 600 rounds on 2 targets, all of them run before the rollout ended.
    assert len(events.of(SampleTaken, phase="watch", wave=1)) == 1200
    assert ended[0].seq < events.all[-1].seq


async def test_until_wave_cancels_the_watch(tmp_path: Path) -> None:
    rollout = make_rollout(_estate(tmp_path, after=None), until_wave=1, clock=Clock(0.001))
    events = Events(rollout)
    outcome = await rollout.run()
    assert outcome.outcome == "stopped"
    assert [e.outcome for e in events.of(WatchEnded, wave=1)] == ["cancelled"]


async def test_no_watch_without_watch_after(tmp_path: Path) -> None:
    rollout = make_rollout(_estate(tmp_path, after="20s", watch="0s"))
    events = Events(rollout)
    outcome = await rollout.run()
    assert outcome.outcome == "done"  # nothing watched dev after its soak: nothing saw it
    assert not events.of(WatchStarted)


def test_watch_after_and_after_are_validated_with_their_lines(tmp_path: Path) -> None:
    from sluice.engine.model.estate import EstateError, parse_estate

    text = """[estate]
name = "x"
[[channels]]
name = "dev"
watch_after = "soon"
[executors.sim]
kind = "simulated"
[modules.op]
versions = ["1", "2"]
initial = "1"
[simulation]
[[simulation.regressions]]
module = "op"
version = "2"
metric = "p99_latency"
after = 5
[targets.a]
channel = "dev"
executor = "sim"
"""
    try:
        parse_estate(text, tmp_path / "e.toml")
    except EstateError as exc:
        problems = [str(p) for p in exc.problems]
    else:
        raise AssertionError("accepted")
    assert problems == [
        f"{tmp_path / 'e.toml'}:5: channels[0].watch_after: 'soon' is not a duration "
        "(use e.g. '300ms', '10s', '2m', '1h30m')",
        f"{tmp_path / 'e.toml'}:16: simulation.regressions[0].after: expected a duration string "
        "like '30s', got an integer",
    ]
