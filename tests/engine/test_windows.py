"""Change windows: validation with lines, and evaluation across a DST change and midnight."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from sluice.engine.model.estate import Estate, EstateError, parse_estate
from sluice.engine.model.windows import closed

BERLIN = ZoneInfo("Europe/Berlin")

BASE = """
[estate]
name = "w"
[[channels]]
name = "dev"
[[channels]]
name = "production"
[targets.d]
channel = "dev"
executor = "e"
[targets.p]
channel = "production"
executor = "e"
[executors.e]
kind = "simulated"
[modules.m]
versions = ["1", "2"]
initial = "1"
"""


def estate(windows: str) -> Estate:
    return parse_estate(BASE + windows, Path("w.toml"))


BUSINESS = """
[[windows]]
name = "business-hours"
channels = ["production"]
timezone = "Europe/Berlin"
allow = [{ days = ["mon", "tue", "wed", "thu", "fri"], start = "09:00", end = "16:00" }]
"""


def at(year: int, month: int, day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=BERLIN)


def test_inside_an_allow_rule_is_open_and_other_channels_are_not_governed():
    windows = estate(BUSINESS).windows
    assert closed(windows, "production", at(2026, 12, 2, 10)) is None  # a Wednesday
    assert closed(windows, "dev", at(2026, 12, 5, 3)) is None  # Saturday night, other channel
    shut = closed(windows, "production", at(2026, 12, 2, 16))  # end is exclusive
    assert shut is not None and shut.opens == at(2026, 12, 3, 9)


def test_the_next_opening_across_the_spring_dst_change_in_berlin():
    """Sunday 2026-03-29 02:00 CET → 03:00 CEST: Monday 09:00 is 07:00 UTC, not 08:00."""
    windows = estate(BUSINESS).windows
    friday_evening = at(2026, 3, 27, 17)  # CET, 16:00 UTC
    shut = closed(windows, "production", friday_evening)
    assert shut is not None
    assert shut.opens == at(2026, 3, 30, 9)
    assert shut.opens.astimezone(dt.UTC) == dt.datetime(2026, 3, 30, 7, tzinfo=dt.UTC)
    # 63 hours of real time, though the wall clock moves 64.
    assert shut.opens - friday_evening == dt.timedelta(hours=63)
    text = shut.text(friday_evening)
    assert text.startswith("production opens Mon 09:00 Europe/Berlin — in 2d15h")
    assert "outside window 'business-hours'" in text


def test_the_autumn_dst_change_repeats_an_hour_and_the_rule_follows_the_wall_clock():
    windows = estate(
        BUSINESS.replace('["mon", "tue", "wed", "thu", "fri"]', '["sun"]').replace(
            'start = "09:00", end = "16:00"', 'start = "02:00", end = "03:00"'
        )
    ).windows
    # 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:00–03:00 happens twice (two hours).
    first = dt.datetime(2026, 10, 25, 0, 30, tzinfo=dt.UTC)  # 02:30 CEST
    second = dt.datetime(2026, 10, 25, 1, 30, tzinfo=dt.UTC)  # 02:30 CET
    after = dt.datetime(2026, 10, 25, 2, 0, tzinfo=dt.UTC)  # 03:00 CET
    assert closed(windows, "production", first) is None
    assert closed(windows, "production", second) is None
    assert closed(windows, "production", after) is not None


def test_a_night_window_across_midnight_is_two_rules():
    windows = estate("""
[[windows]]
name = "nights"
timezone = "Europe/Berlin"
allow = [
  { days = ["fri"], start = "22:00", end = "24:00" },
  { days = ["sat"], start = "00:00", end = "04:00" },
]
""").windows
    assert closed(windows, "dev", at(2026, 12, 4, 23, 59)) is None  # Friday
    assert closed(windows, "dev", at(2026, 12, 5, 0, 0)) is None  # past midnight: Saturday
    assert closed(windows, "dev", at(2026, 12, 5, 3, 59)) is None
    shut = closed(windows, "dev", at(2026, 12, 5, 4, 0))
    assert shut is not None and shut.opens == at(2026, 12, 11, 22)
    # Just before midnight on Thursday: the next opening is Friday 22:00, a day later.
    shut = closed(windows, "dev", at(2026, 12, 3, 23, 30))
    assert shut is not None and shut.opens == at(2026, 12, 4, 22)


def test_a_deny_period_closes_an_allowed_time_and_names_itself():
    windows = estate(
        BUSINESS
        + 'deny = [{ start = 2026-12-21T00:00:00+01:00, end = 2027-01-04T12:00:00+01:00, reason = "year-end freeze" }]\n'
    ).windows
    now = at(2026, 12, 22, 10)  # a Tuesday inside allowed hours, inside the deny period
    shut = closed(windows, "production", now)
    assert shut is not None
    assert "deny period of window 'business-hours': year-end freeze" in shut.reason
    # The period ends Monday 12:00, inside the allow rule: that is the opening.
    assert shut.opens == at(2027, 1, 4, 12)


def test_windows_are_intersected_and_a_window_without_rules_allows_any_time_but_its_denies():
    windows = estate(
        BUSINESS
        + """
[[windows]]
name = "change-freeze"
deny = [{ start = 2026-12-03T00:00:00Z, end = 2026-12-04T00:00:00Z }]
"""
    ).windows
    assert closed(windows, "dev", at(2026, 12, 2, 3)) is None
    shut = closed(windows, "production", at(2026, 12, 2, 17))
    # Thursday 09:00 is inside the deny period (UTC day): Friday 09:00 it is.
    assert shut is not None and shut.opens == at(2026, 12, 4, 9)


def test_bad_windows_are_reported_with_lines_all_at_once():
    with pytest.raises(EstateError) as info:
        estate("""
[[windows]]
name = "bad"
channels = ["prod"]
timezone = "Mars/Olympus"
allow = [{ days = ["mon", "funday"], start = "17:00", end = "09:00" }]
deny = [{ start = 2026-12-20T00:00:00Z, end = 2026-12-01T00:00:00Z }, { start = "soon", end = 2026-12-01T00:00:00Z }]
[[windows]]
name = "worse"
[[windows.allow]]
start = "25:00"
""")
    problems = [str(p) for p in info.value.problems]
    first = BASE.count("\n") + 2  # the line of [[windows]]
    assert problems == [
        f"w.toml:{first + 2}: windows[0].channels: unknown channel 'prod'",
        f"w.toml:{first + 3}: windows[0].timezone: unknown timezone 'Mars/Olympus' "
        "(an IANA name like 'Europe/Berlin')",
        f"w.toml:{first + 4}: windows[0].allow[0].days: unknown day 'funday' (mon … sun)",
        f"w.toml:{first + 4}: windows[0].allow[0].start: start 17:00 is not before end 09:00 "
        "(split a rule across midnight in two: ... to 24:00, and 00:00 to ... on the next days)",
        f"w.toml:{first + 5}: windows[0].deny[0].start: start 2026-12-20T00:00:00+00:00 is not "
        "before end 2026-12-01T00:00:00+00:00",
        f"w.toml:{first + 5}: windows[0].deny[1].start: expected a TOML datetime like "
        "2026-12-20T00:00:00+01:00 (no quotes)",
        f"w.toml:{first + 9}: windows[1].allow[0].start: '25:00' is not a time of day (00:00 to 23:59)",
    ]


def test_entry_and_approvers_are_channel_keys():
    data = BASE.replace(
        'name = "production"\n', 'name = "production"\nentry = "manual"\napprovers = 2\n'
    )
    production = parse_estate(data, Path("w.toml")).channel("production")
    assert (production.entry, production.approvers) == ("manual", 2)
    with pytest.raises(EstateError) as info:
        parse_estate(data.replace("approvers = 2", "approvers = 0"), Path("w.toml"))
    assert "channels[1].approvers: 0 is below the minimum 1" in str(info.value)


def test_the_plan_shows_entry_apart_from_gate_and_its_eta_waits_for_windows():
    from sluice.engine.model.plan import (
        PLAN_COLUMNS,
        approvals_note,
        make_plan,
        plan_rows,
        window_waits,
        windows_note,
    )

    data = BASE.replace(
        'name = "production"\n', 'name = "production"\nentry = "manual"\ngate = "manual"\n'
    )
    state = parse_estate(data + BUSINESS, Path("w.toml"))
    plan = make_plan(state, "m", "2")
    friday = at(2026, 3, 27, 17).timestamp()
    waits = window_waits(plan, state.windows, friday)
    # dev (wave 1) is not governed; production (wave 2) waits until Monday 09:00 CEST.
    assert list(waits) == [2]
    assert friday + plan.waves[0].expected_seconds + waits[2] == at(2026, 3, 30, 9).timestamp()
    rows = {row[0]: dict(zip(PLAN_COLUMNS, row, strict=True)) for row in plan_rows(plan, waits)}
    assert (rows["1"]["entry"], rows["1"]["gate"]) == ("—", "auto")
    assert (rows["2"]["entry"], rows["2"]["gate"]) == ("approve", "manual")
    assert rows["2"]["ETA"] == "⏲+2d15h" and rows["1"]["ETA"].startswith("+")
    # 63 h from Friday 17:00 CET, less wave 1's minute, shown to the hour below
    assert windows_note(plan, waits) == "wave 2 waits 2d14h for its change window"
    assert approvals_note(plan) == (
        "production needs approval to start (1 person); 1 manual gate(s) wait for approval "
        "— not counted"
    )
    # Inside the window nothing waits.
    assert window_waits(plan, state.windows, at(2026, 3, 30, 10).timestamp()) == {}
