"""Durations, duration ranges and percentages as written in estate files."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(text: str) -> float:
    """Parse ``"300ms"``, ``"10s"``, ``"2m"``, ``"1h30m"`` into seconds.

    Raises:
        ValueError: with a message fit to show the user.
    """
    compact = text.strip().replace(" ", "")
    if not compact:
        raise ValueError("empty duration")
    pos, total = 0, 0.0
    for match in _PART.finditer(compact):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(compact):
        raise ValueError(f"{text!r} is not a duration (use e.g. '300ms', '10s', '2m', '1h30m')")
    if not math.isfinite(total):
        # float("9" * 400) is inf: no timer (or ETA) can be built from it.
        raise ValueError(f"{text!r} is too long a duration")
    return total


def parse_duration_range(text: str) -> tuple[float, float]:
    """Parse ``"2s..6s"`` (or a single duration) into ``(low, high)`` seconds."""
    if ".." in text:
        low_text, _, high_text = text.partition("..")
        low, high = parse_duration(low_text), parse_duration(high_text)
        if high < low:
            raise ValueError(f"{text!r}: the upper bound is below the lower bound")
        return low, high
    value = parse_duration(text)
    return value, value


def format_duration(seconds: float) -> str:
    """Render seconds the way an operator reads them: ``1h02m``, ``4m10s``, ``12s``, ``350ms``."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


@dataclass(frozen=True)
class Share:
    """A count (``3``) or a percentage (``"25%"``) of some whole, as in ``max_failures``."""

    value: float
    percent: bool

    def of(self, whole: int) -> int:
        """The count this share allows out of ``whole`` (percentages round down)."""
        if not self.percent:
            return int(self.value)
        return math.floor(whole * self.value / 100 + 1e-9)

    def cumulative(self, whole: int) -> int:
        """The cumulative size this share reaches out of ``whole`` (percentages round up)."""
        if not self.percent:
            return int(self.value)
        return math.ceil(whole * self.value / 100 - 1e-9)

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.percent else str(int(self.value))


def parse_share(raw: object, *, allow_zero: bool = True) -> Share:
    """Parse a non-negative count or a ``"N%"`` string (0–100%)."""
    if isinstance(raw, bool):
        raise ValueError("expected a count or a percentage like '25%'")
    if isinstance(raw, int):
        if raw < 0 or (raw == 0 and not allow_zero):
            raise ValueError(f"{raw} must be {'≥ 0' if allow_zero else '≥ 1'}")
        return Share(raw, percent=False)
    if isinstance(raw, str) and raw.strip().endswith("%"):
        try:
            value = float(raw.strip()[:-1])
        except ValueError:
            raise ValueError(f"{raw!r} is not a percentage") from None
        if not 0 <= value <= 100 or (value == 0 and not allow_zero) or math.isnan(value):
            raise ValueError(f"{raw!r} is outside {'0' if allow_zero else '0 (excluded)'}–100%")
        return Share(value, percent=True)
    raise ValueError(f"{raw!r} is not a count or a percentage like '25%'")


def parse_increase(raw: object) -> float:
    """Parse a relative increase: ``"20%"`` → 0.2. Increases may exceed 100%."""
    if isinstance(raw, str) and raw.strip().endswith("%"):
        try:
            value = float(raw.strip()[:-1])
        except ValueError:
            raise ValueError(f"{raw!r} is not a percentage") from None
        if value < 0 or math.isnan(value):
            raise ValueError(f"{raw!r} must not be negative")
        return value / 100
    raise ValueError(f"{raw!r} is not a percentage like '20%'")
