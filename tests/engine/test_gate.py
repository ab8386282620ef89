"""Judging measurements (classify) and gates (limits, fail closed), without a rollout."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluice.engine.checks.base import Reading
from sluice.engine.model.estate import CheckSpec
from sluice.engine.rollout.gate import ERROR, FAIL, INCONCLUSIVE, PASS, Gate, classify

pytestmark = pytest.mark.timeout(30)


def spec(name="lat", **values) -> CheckSpec:
    fields = {
        "name": name,
        "source": "simulated",
        "max": None,
        "min": None,
        "max_increase": None,
        "interval": 10.0,
        "failure_limit": 0,
        "inconclusive_limit": 0,
        "consecutive_error_limit": 4,
        "baseline": "self",
        "timeout": 10.0,
        "settings": {},
        **values,
    }
    return CheckSpec(**fields)


# ---------------------------------------------------------------------------------- classify


@pytest.mark.parametrize(
    ("check", "reading", "baseline", "expected"),
    [
        (spec(max=0.25), Reading(0.2), None, (PASS, "")),
        (spec(max=0.25), Reading(0.25), None, (PASS, "")),  # at the bound is healthy
        (spec(max=0.25), Reading(0.36), None, (FAIL, "0.36 > max 0.25")),
        (spec(min=10), Reading(9.5), None, (FAIL, "9.5 < min 10")),
        (spec(min=10), Reading(10), None, (PASS, "")),
        (
            spec(max_increase=0.2),
            Reading(0.13),
            0.1,
            (FAIL, "0.13 is +30% over baseline 0.1 (max +20%)"),
        ),
        (spec(max_increase=0.2), Reading(0.12), 0.1, (PASS, "")),
        (
            spec(max_increase=0.2),
            Reading(0.12),
            None,
            (INCONCLUSIVE, "no baseline to compare with"),
        ),
        (
            spec(max_increase=0.2),
            Reading(0.12),
            math.nan,
            (INCONCLUSIVE, "no baseline to compare with"),
        ),
        # a zero baseline has no relative increase; the absolute bounds still hold
        (spec(max_increase=0.2, max=5), Reading(3), 0.0, (PASS, "")),
        (spec(max_increase=0.2, max=5), Reading(6), 0.0, (FAIL, "6 > max 5")),
        (spec(max=1), Reading(None), None, (INCONCLUSIVE, "no data")),
        (spec(max=1), Reading(None, detail="empty result"), None, (INCONCLUSIVE, "empty result")),
        (spec(max=1), Reading(math.nan), None, (INCONCLUSIVE, "no data")),
        (spec(max=1), Reading(math.inf), None, (INCONCLUSIVE, "no data")),
        (spec(max=1), Reading(-math.inf), None, (INCONCLUSIVE, "no data")),
        (
            spec(max=1),
            Reading(0.5, error="connection refused"),
            None,
            (ERROR, "connection refused"),
        ),
        (
            spec(max=1),
            Reading(breach="HTTP 503, expected 200"),
            None,
            (FAIL, "HTTP 503, expected 200"),
        ),
        (spec(), Reading(123.0), None, (PASS, "")),  # no bounds: data is enough
    ],
)
def test_classify(check, reading, baseline, expected):
    assert classify(check, reading, baseline) == expected


@given(
    value=st.one_of(st.none(), st.just(math.nan), st.just(math.inf), st.floats()),
    error=st.one_of(st.none(), st.text(min_size=1)),
    breach=st.one_of(st.none(), st.text(min_size=1)),
    baseline=st.one_of(st.none(), st.floats()),
)
def test_classify_never_passes_missing_or_failed_data(value, error, breach, baseline):
    check = spec(max=1.0, max_increase=0.5)
    outcome, _ = classify(check, Reading(value, error=error, breach=breach), baseline)
    if error is not None:
        assert outcome == ERROR
    elif breach is not None:
        assert outcome == FAIL
    elif value is None or not math.isfinite(value):
        assert outcome == INCONCLUSIVE
    if outcome == PASS:
        assert value is not None and math.isfinite(value) and value <= 1.0
        assert baseline is not None and not math.isnan(baseline)


# ---------------------------------------------------------------------------------- Gate


def gate_with(check: CheckSpec, readings: list[Reading], baseline: float | None = 1.0) -> Gate:
    gate = Gate([check], ["t1"])
    gate.set_baseline(check.name, "t1", baseline)
    for reading in readings:
        gate.record(check.name, "t1", reading)
    return gate


OK, BAD, NONE, ERR = Reading(0.5), Reading(2.0), Reading(None), Reading(error="refused")


@pytest.mark.parametrize(
    ("check", "readings", "verdict", "reason"),
    [
        (spec(max=1), [OK, OK, OK], "passed", None),
        (spec(max=1), [BAD, OK], "failed", "1 failed measurement(s) > limit 0 (2 > max 1)"),
        (spec(max=1, failure_limit=1), [BAD, OK], "passed", None),  # = limit: tolerated
        (
            spec(max=1, failure_limit=1),
            [BAD, OK, BAD, OK],
            "failed",
            "2 failed measurement(s) > limit 1",
        ),
        (spec(max=1), [NONE, OK], "inconclusive", "1 inconclusive > limit 0 (no data)"),
        (spec(max=1, inconclusive_limit=1), [NONE, OK], "passed", None),
        (
            spec(max=1, inconclusive_limit=1),
            [NONE, NONE, OK],
            "inconclusive",
            "2 inconclusive > limit 1",
        ),
        (spec(max=1, consecutive_error_limit=2), [ERR, ERR, OK], "passed", None),
        (spec(max=1, consecutive_error_limit=2), [ERR, ERR, OK, ERR, ERR, OK], "passed", None),
        (
            spec(max=1, consecutive_error_limit=2),
            [ERR, ERR, ERR, OK],
            "inconclusive",
            "3 consecutive errors > limit 2",
        ),
        # fail closed: the latest measurement decides, even under every limit
        (spec(max=1), [OK, ERR], "inconclusive", "latest measurement error (refused)"),
        (
            spec(max=1, inconclusive_limit=5),
            [OK, NONE],
            "inconclusive",
            "latest measurement inconclusive",
        ),
        (
            spec(max=1, failure_limit=3),
            [OK, BAD],
            "inconclusive",
            "latest measurement fail (2 > max 1)",
        ),
        (spec(max=1), [], "inconclusive", "no measurement"),
    ],
)
def test_gate_verdicts(check, readings, verdict, reason):
    gate = gate_with(check, readings)
    got, reasons = gate.final_verdict()
    assert got == verdict
    if reason is None:
        assert reasons == []
    else:
        assert any(reason in r for r in reasons), reasons
        assert all(r.startswith("lat on t1: ") for r in reasons)


def test_consecutive_errors_reset_on_any_other_outcome():
    gate = gate_with(spec(max=1, consecutive_error_limit=1), [ERR, NONE, ERR])
    series = gate.series[("lat", "t1")]
    assert (series.errors, series.consecutive_errors) == (2, 1)


def test_a_fail_wins_over_an_inconclusive_in_the_early_verdict():
    checks = [spec("lat", max=1), spec("err", max=1)]
    gate = Gate(checks, ["t1", "t2"])
    gate.record("lat", "t1", NONE)
    assert gate.early_verdict() == (
        "inconclusive",
        ["lat on t1: 1 inconclusive > limit 0 (no data)"],
    )
    gate.record("err", "t2", BAD)
    verdict, reasons = gate.early_verdict()
    assert verdict == "failed"
    assert reasons == ["err on t2: 1 failed measurement(s) > limit 0 (2 > max 1)"]


def test_the_limit_reason_quotes_the_failure_not_a_later_error():
    gate = gate_with(spec(max=1), [BAD, ERR])
    assert gate.final_verdict() == (
        "failed",
        ["lat on t1: 1 failed measurement(s) > limit 0 (2 > max 1)"],
    )


def test_every_target_and_check_must_pass():
    checks = [spec("lat", max=1), spec("err", max=1)]
    gate = Gate(checks, ["t1", "t2"])
    for check in ("lat", "err"):
        for target in ("t1", "t2"):
            gate.record(check, target, OK)
    assert gate.final_verdict() == ("passed", [])
    gate.record("err", "t2", NONE)
    assert gate.final_verdict()[0] == "inconclusive"


def test_control_baseline_overrides_the_stored_one():
    gate = Gate([spec(max_increase=0.5)], ["t1"])
    gate.set_baseline("lat", "t1", 1.0)
    assert gate.record("lat", "t1", Reading(2.5), baseline=2.0) == (PASS, "")
    assert gate.record("lat", "t1", Reading(2.5))[0] == FAIL  # +150% over its own 1.0


def test_summary_keeps_the_measurements_behind_the_verdict():
    gate = gate_with(spec(max=1, min=0.1, max_increase=0.5), [OK, ERR, BAD], baseline=0.4)
    summary = gate.summary()
    assert summary["lat"]["max"] == 1 and summary["lat"]["min"] == 0.1
    assert summary["lat"]["max_increase"] == 0.5
    series = summary["lat"]["targets"]["t1"]
    assert series == {
        "baseline": 0.4,
        "values": [0.5, None, 2.0],
        "outcomes": ["pass", "error", "fail"],
        "fails": 1,
        "inconclusives": 0,
        "errors": 1,
        "latest": "fail",
        "reason": "2 > max 1",
    }
