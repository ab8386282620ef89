"""Change windows: when a channel's waves may start.

A ``[[windows]]`` table names the channels it governs (default: all), an IANA ``timezone``, weekly
``allow`` rules (``days``, ``start``, ``end`` in that zone's wall-clock time) and one-off ``deny``
periods (TOML datetimes). A wave may start when, for every window that governs its channel, the
moment is inside one of its allow rules (a window without allow rules allows any time) and outside
all of its deny periods. Everything here works on aware datetimes and converts with ``zoneinfo``,
so daylight-saving changes move the UTC instants of "09:00" as the wall clock does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sluice.engine.model.schema import Key

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

WINDOW_KEYS = {
    "name": Key("str", required=True),
    "channels": Key("str_list"),
    "timezone": Key("str", default="UTC"),
    "allow": Key("any_list", default=()),
    "deny": Key("any_list", default=()),
    "description": Key("str"),
}
ALLOW_KEYS = {
    "days": Key("str_list", default=DAYS),
    "start": Key("str", default="00:00"),
    "end": Key("str", default="24:00"),
}
DENY_KEYS = {
    "start": Key("datetime", required=True),
    "end": Key("datetime", required=True),
    "reason": Key("str", default=""),
}

#: How far ahead :func:`next_open` looks before it says "not within a year".
HORIZON = dt.timedelta(days=366)


@dataclass(frozen=True)
class AllowRule:
    days: tuple[int, ...]  # 0 = Monday
    start: dt.time
    end: dt.time | None  # None: midnight at the end of the day ("24:00")

    def covers(self, local: dt.datetime) -> bool:
        if local.weekday() not in self.days:
            return False
        wall = local.time().replace(tzinfo=None)
        return self.start <= wall and (self.end is None or wall < self.end)


@dataclass(frozen=True)
class DenyPeriod:
    start: dt.datetime
    end: dt.datetime
    reason: str

    def covers(self, moment: dt.datetime) -> bool:
        return self.start <= moment < self.end


@dataclass(frozen=True)
class Window:
    name: str
    channels: tuple[str, ...] | None  # None: every channel
    timezone: str
    allow: tuple[AllowRule, ...]
    deny: tuple[DenyPeriod, ...]

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def governs(self, channel: str) -> bool:
        return self.channels is None or channel in self.channels

    def closed_by(self, moment: dt.datetime) -> str | None:
        """Why the window is closed at ``moment`` (``None``: open)."""
        for period in self.deny:
            if period.covers(moment):
                why = f": {period.reason}" if period.reason else ""
                return f"deny period of window {self.name!r}{why} (until {self.local_text(period.end)})"
        if self.allow and not any(rule.covers(moment.astimezone(self.zone)) for rule in self.allow):
            return f"outside window {self.name!r}"
        return None

    def edges_after(self, moment: dt.datetime) -> Iterable[dt.datetime]:
        """Instants after ``moment`` at which this window may open (ends of denies, rule starts)."""
        for period in self.deny:
            if period.end > moment:
                yield period.end
        zone = self.zone
        day = moment.astimezone(zone).date()
        for offset in range(8):
            date = day + dt.timedelta(days=offset)
            for rule in self.allow:
                if date.weekday() in rule.days:
                    # In UTC: aware datetimes of one zone compare (and subtract) by wall clock,
                    # which is wrong across a DST change. A start in a skipped hour (spring
                    # forward) becomes the real instant it names.
                    edge = dt.datetime.combine(date, rule.start, tzinfo=zone).astimezone(dt.UTC)
                    if edge > moment:
                        yield edge

    def local_text(self, moment: dt.datetime) -> str:
        local = moment.astimezone(self.zone)
        return f"{local:%a %Y-%m-%d %H:%M} {self.timezone}"


@dataclass(frozen=True)
class Closed:
    """Why a channel's wave cannot start now, and when it can."""

    channel: str
    reason: str
    opens: dt.datetime | None  # in UTC; None: not within HORIZON
    window: Window

    def text(self, now: dt.datetime) -> str:
        if self.opens is None:
            return f"{self.channel} is closed ({self.reason}) and does not open within a year"
        local = self.opens.astimezone(self.window.zone)
        when = (
            f"{local:%a %H:%M}"
            if self.opens - now < dt.timedelta(days=6)
            else f"{local:%a %Y-%m-%d %H:%M}"
        )
        return (
            f"{self.channel} opens {when} {self.window.timezone} — in "
            f"{span_text((self.opens - now).total_seconds())} ({self.reason})"
        )


def span_text(seconds: float) -> str:
    """``2h13m``, ``3d4h``, ``45s``."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s" if minutes < 10 else f"{minutes}m"
    return f"{secs}s"


def utc(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC)


def closed(windows: Iterable[Window], channel: str, moment: dt.datetime) -> Closed | None:
    """Whether ``channel``'s waves are held at ``moment``, and until when (``None``: open now)."""
    moment = moment.astimezone(dt.UTC)
    governing = [w for w in windows if w.governs(channel)]
    blocker = next(((w, why) for w in governing for why in [w.closed_by(moment)] if why), None)
    if blocker is None:
        return None
    window, reason = blocker
    return Closed(channel, reason, next_open(governing, moment), window)


def next_open(windows: list[Window], moment: dt.datetime) -> dt.datetime | None:
    """The first instant at or after ``moment`` at which every window in ``windows`` is open."""
    cursor = moment
    limit = moment + HORIZON
    while cursor <= limit:
        if all(w.closed_by(cursor) is None for w in windows):
            return cursor
        edges = [edge for w in windows for edge in w.edges_after(cursor)]
        if not edges:
            return None
        cursor = min(edges)
    return None


# ---------------------------------------------------------------------- validation


class _Checker(Protocol):
    def problem(self, key_path: tuple[str | int, ...], message: str) -> None: ...
    def table(
        self, raw: Any, keys: Mapping[str, Key], at: tuple[str | int, ...]
    ) -> dict[str, Any]: ...


def _clock_time(text: str, end: bool) -> dt.time | None:
    if end and text == "24:00":
        return None
    hour, sep, minute = text.partition(":")
    if not (sep and hour.isdigit() and minute.isdigit() and len(minute) == 2):
        raise ValueError(f"expected a time like '09:00', got {text!r}")
    if not (0 <= int(hour) <= 23 and 0 <= int(minute) <= 59):
        raise ValueError(f"{text!r} is not a time of day (00:00 to {'24:00' if end else '23:59'})")
    return dt.time(int(hour), int(minute))


def validate_windows(
    checker: _Checker, raw_list: Any, channel_names: Iterable[str]
) -> tuple[Window, ...]:
    """Validate ``[[windows]]``; problems go to ``checker`` (the estate validator)."""
    if raw_list is None:
        return ()
    if not isinstance(raw_list, list):
        checker.problem(("windows",), "expected [[windows]] tables")
        return ()
    names = set(channel_names)
    result = []
    for index, raw in enumerate(raw_list):
        at: tuple[str | int, ...] = ("windows", index)
        v = checker.table(raw, WINDOW_KEYS, at)
        for channel in v["channels"] or ():
            if channel not in names:
                checker.problem((*at, "channels"), f"unknown channel {channel!r}")
        zone = v["timezone"] or "UTC"
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            checker.problem(
                (*at, "timezone"), f"unknown timezone {zone!r} (an IANA name like 'Europe/Berlin')"
            )
            zone = "UTC"
        allow = _allow_rules(checker, v["allow"] or (), (*at, "allow"))
        deny = _deny_periods(checker, v["deny"] or (), (*at, "deny"), ZoneInfo(zone))
        result.append(Window(v["name"] or "", v["channels"], zone, allow, deny))
    return tuple(result)


def _allow_rules(checker: _Checker, raw: Any, at: tuple[str | int, ...]) -> tuple[AllowRule, ...]:
    rules = []
    for index, item in enumerate(raw):
        r_at = (*at, index)
        v = checker.table(item, ALLOW_KEYS, r_at)
        days = []
        for day in v["days"] or ():
            short = day.lower()[:3]
            if short not in DAYS or day.lower() not in (short, _FULL_DAYS[DAYS.index(short)]):
                checker.problem((*r_at, "days"), f"unknown day {day!r} (mon … sun)")
            else:
                days.append(DAYS.index(short))
        times: list[dt.time | None] = []
        for name in ("start", "end"):
            try:
                times.append(_clock_time(v[name], end=name == "end"))
            except ValueError as exc:
                checker.problem((*r_at, name), str(exc))
                times.append(dt.time(0) if name == "start" else None)
        start, end = times
        assert start is not None
        if end is not None and start >= end:
            checker.problem(
                (*r_at, "start"),
                f"start {start:%H:%M} is not before end {end:%H:%M} (split a rule across "
                "midnight in two: ... to 24:00, and 00:00 to ... on the next days)",
            )
        rules.append(AllowRule(tuple(sorted(set(days))), start, end))
    return tuple(rules)


def _deny_periods(
    checker: _Checker, raw: Any, at: tuple[str | int, ...], zone: ZoneInfo
) -> tuple[DenyPeriod, ...]:
    periods = []
    for index, item in enumerate(raw):
        p_at = (*at, index)
        v = checker.table(item, DENY_KEYS, p_at)
        start, end = (_aware(v[name], zone) for name in ("start", "end"))
        if start is None or end is None:
            continue
        if start >= end:
            checker.problem(
                (*p_at, "start"), f"start {start.isoformat()} is not before end {end.isoformat()}"
            )
        periods.append(
            DenyPeriod(start.astimezone(dt.UTC), end.astimezone(dt.UTC), v["reason"] or "")
        )
    return tuple(periods)


def _aware(value: Any, zone: ZoneInfo) -> dt.datetime | None:
    """A TOML datetime or date; without an offset it is read in the window's timezone."""
    if value is None:
        return None
    if not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time(0))
    return value if value.tzinfo else value.replace(tzinfo=zone)


#: Shorthand for callers that hold a timestamp (the engine's clock gives floats).
Now = Callable[[], float]
