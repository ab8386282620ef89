"""The stop countdown's words (engine.rollout.stopping), at fixed instants."""

from __future__ import annotations

from sluice.engine.rollout.stopping import Stopping, Stops


def test_a_stop_says_the_signal_how_long_ago_and_when_sigkill_follows() -> None:
    stop = Stopping("eph-101", "SIGINT", since=1000.0, grace=300.0)
    assert stop.describe(1012.0) == "stopping eph-101: SIGINT sent 12 s ago, SIGKILL in 4m48s"
    assert stop.describe(1012.4) == "stopping eph-101: SIGINT sent 12 s ago, SIGKILL in 4m48s"
    assert stop.describe(1400.0) == "stopping eph-101: SIGINT sent 6m40s ago, SIGKILL in 0s"
    killed = Stopping("eph-101", "SIGKILL", since=1000.0, grace=0.0)
    assert killed.describe(1003.0) == "stopping eph-101: SIGKILL sent 3 s ago"


def test_stops_keep_the_latest_per_target_until_its_apply_ends() -> None:
    stops = Stops()
    assert stops.line() == ""
    for target in ("a", "b", "c"):
        stops.noter(target)("SIGTERM", 30.0)
    stops.noter("a")("SIGKILL", 0.0)  # a second abort: the same target, now killed
    assert [(s.target, s.signal) for s in stops.now()] == [
        ("b", "SIGTERM"),
        ("c", "SIGTERM"),
        ("a", "SIGKILL"),
    ]
    assert stops.line().endswith("; and 1 more stopping")
    for target in ("a", "b", "c"):
        stops.ended(target)
    assert stops.now() == [] and stops.line() == ""
