"""Durations, duration ranges, shares and increases as written in estate files."""

from __future__ import annotations

import pytest

from sluice.engine.model.units import (
    Share,
    format_duration,
    parse_duration,
    parse_duration_range,
    parse_increase,
    parse_share,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("300ms", 0.3),
        ("10s", 10.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1m30s", 90.0),
        ("1.5s", 1.5),
        ("0s", 0.0),
        (" 2m 30s ", 150.0),
        ("1m500ms", 60.5),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "5 parsecs",
        "10",
        "-5s",
        "s",
        "1e3s",
        "5sec",
        "m5",
        "1h30",
        "1.s",
        pytest.param("9" * 400 + "s", id="overflows-to-inf"),
    ],
)
def test_bad_duration(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_bad_duration_message_names_the_text() -> None:
    with pytest.raises(ValueError, match=r"'5 parsecs' is not a duration \(use e\.g\."):
        parse_duration("5 parsecs")


def test_parse_duration_range() -> None:
    assert parse_duration_range("2s..6s") == (2.0, 6.0)
    assert parse_duration_range("500ms..1m") == (0.5, 60.0)
    assert parse_duration_range("3s") == (3.0, 3.0)
    assert parse_duration_range("2s..2s") == (2.0, 2.0)


@pytest.mark.parametrize("text", ["6s..2s", "..6s", "2s..", "2s..6x", "2s...6s"])
def test_bad_duration_range(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration_range(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.35, "350ms"),
        (0, "0ms"),
        (12, "12s"),
        (59.4, "59s"),
        (59.6, "1m00s"),
        (250, "4m10s"),
        (3720, "1h02m"),
        (90000, "25h00m"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


# --- shares -------------------------------------------------------------------------------------


def test_count_share() -> None:
    share = parse_share(3)
    assert share == Share(3, percent=False)
    assert (share.of(10), share.cumulative(10), str(share)) == (3, 3, "3")


def test_percent_share_rounds_down_as_a_budget_and_up_as_a_wave() -> None:
    share = parse_share("25%")
    assert share == Share(25.0, percent=True)
    assert str(share) == "25%"
    assert share.of(10) == 2  # budget: 2.5 → 2
    assert share.cumulative(10) == 3  # wave: 2.5 → 3
    assert share.of(8) == share.cumulative(8) == 2  # exact: no rounding drift
    assert parse_share("10%").cumulative(30) == 3  # 0.1 * 30 is 3.0000000000000004 in floats


def test_share_accepts_spaces_and_fractions() -> None:
    assert parse_share(" 12.5% ") == Share(12.5, percent=True)
    assert parse_share("0%") == Share(0.0, percent=True)
    assert parse_share(0) == Share(0, percent=False)
    assert parse_share("100%", allow_zero=False).cumulative(7) == 7


@pytest.mark.parametrize(
    ("raw", "allow_zero"),
    [
        ("150%", True),
        ("-5%", True),
        ("lots%", True),
        ("nan%", True),
        ("inf%", True),
        ("25", True),
        (-1, True),
        (0, False),
        ("0%", False),
        (True, True),
        (2.5, True),
        ([1], True),
        (None, True),
    ],
)
def test_bad_share(raw: object, allow_zero: bool) -> None:
    with pytest.raises(ValueError):
        parse_share(raw, allow_zero=allow_zero)


@pytest.mark.parametrize(
    ("raw", "value"), [("20%", 0.2), ("0%", 0.0), ("250%", 2.5), (" 5% ", 0.05)]
)
def test_parse_increase(raw: str, value: float) -> None:
    assert parse_increase(raw) == pytest.approx(value)


@pytest.mark.parametrize("raw", ["-20%", "20", 0.2, "x%", "nan%", None])
def test_bad_increase(raw: object) -> None:
    with pytest.raises(ValueError):
        parse_increase(raw)
