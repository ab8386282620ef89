"""How a status looks: a glyph (never colour alone) and the theme variable that colours it."""

from __future__ import annotations

from rich.text import Text

from sluice.tui.themes import Palette

#: Target status → (glyph, theme variable, word).
TARGET = {
    "pending": ("·", "wave-pending", "pending"),
    "applying": ("◐", "wave-applying", "applying"),
    "ok": ("✓", "wave-ok", "ok"),
    "failed": ("✗", "wave-failed", "failed"),
    "rolling_back": ("↺", "wave-rolling-back", "rolling back"),
    "rolled_back": ("↩", "wave-rolled-back", "rolled back"),
    "unknown": ("?", "wave-unknown", "unknown"),
    "noop": ("=", "wave-noop", "no-op"),
    "aborted": ("■", "wave-failed", "aborted"),
}

#: Wave status → (glyph, theme variable, word).
WAVE = {
    "pending": ("·", "wave-pending", "pending"),
    "applying": ("◐", "wave-applying", "applying"),
    "soaking": ("◔", "gate-soaking", "soaking"),
    "awaiting_approval": ("◆", "gate-waiting", "awaiting approval"),
    "awaiting_entry": ("◆", "gate-waiting", "needs approval"),
    "held": ("◆", "gate-waiting", "held"),
    "inconclusive": ("?", "gate-inconclusive", "inconclusive"),
    "halted": ("✗", "gate-failed", "halted"),
    "failed": ("✗", "gate-failed", "failed"),
    "rolling_back": ("↺", "wave-rolling-back", "rolling back"),
    "rolled_back": ("↩", "wave-rolled-back", "rolled back"),
    "passed": ("✓", "gate-passed", "passed"),
    "approved": ("✓", "gate-passed", "approved"),
    "bypassed": ("»", "gate-waiting", "bypassed"),
    "skipped": ("=", "wave-noop", "skipped (no-op)"),
}

#: The order counts are listed in.
COUNT_ORDER = (
    "ok",
    "failed",
    "applying",
    "rolling_back",
    "rolled_back",
    "unknown",
    "aborted",
    "pending",
    "noop",
)


def target_glyph(status: str) -> tuple[str, str]:
    glyph, variable, _ = TARGET.get(status, ("?", "wave-unknown", status))
    return glyph, variable


def wave_glyph(status: str) -> tuple[str, str, str]:
    return WAVE.get(status, ("·", "wave-pending", status))


def counts_text(counts: dict[str, int], palette: Palette, *, skip_zero: bool = True) -> Text:
    """``✓6 ✗1 ◐2 ·3``, each part in its status colour."""
    text = Text()
    for status in COUNT_ORDER:
        n = counts.get(status, 0)
        if skip_zero and not n:
            continue
        glyph, variable = target_glyph(status)
        if text:
            text.append(" ")
        text.append(f"{glyph}{n}", palette.style(variable))
    return text
