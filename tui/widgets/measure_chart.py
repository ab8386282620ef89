"""A check's measurements on one target, drawn large: value over time against its limit line.

Each measurement is a column of block characters (eight levels a row), coloured by its outcome;
the threshold the measurement was held to is a dotted line (``┈``); for ``baseline = "control"``
the control group's median is a dashed line (``╌``). A left axis gives the scale.
"""

from __future__ import annotations

from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from sluice.tui.estate_data import CheckSeries

BARS = " ▁▂▃▄▅▆▇█"
AXIS = 8  # the width of the left axis labels


def _figure(value: float) -> str:
    """At most ``AXIS - 2`` characters: ``0.25``, ``0.0066``, ``1.2e+03``→``1e+03``."""
    for spec in (".3g", ".2g", ".1g", ".0e"):
        text = f"{value:{spec}}"
        if len(text) <= AXIS - 2:
            return text
    return text


def chart_rows(series: CheckSeries, width: int, height: int) -> list[list[tuple[str, str]]]:
    """The chart as rows of (text, role) runs; roles: axis, pass, fail, inconclusive, limit, control.

    The limit and control lines run the whole width (past the last measurement too), so the
    eye reads every bar against them. Pure (no widget) so it is tested on its own.
    """
    plot = max(1, width - AXIS)
    shown = list(series.values[-plot:])
    offset = len(series.values) - len(shown)
    limits = [series.limit_at(offset + i) for i in range(len(shown))]
    control = series.control_median()
    known = [v for v in shown if v is not None]
    top = max([*known, *(x for x in limits if x is not None), control or 0.0, 0.0]) * 1.15
    top = top or 1.0
    column = max(1, min(6, plot // max(1, len(shown))))
    rest = plot - column * len(shown)
    last_limit = limits[-1] if limits else None

    def crosses(value: float | None, low: int) -> bool:
        return value is not None and low <= value / top * height * 8 < low + 8

    rows: list[list[tuple[str, str]]] = []
    for row in range(height):
        low = (height - 1 - row) * 8  # the level at this row's bottom
        label = _figure(top * (height - row) / height) if row in (0, height // 2) else ""
        runs: list[tuple[str, str]] = [(f"{label:>{AXIS - 2}} ┤", "axis")]
        for i, value in enumerate(shown):
            outcome = series.outcomes[offset + i] if offset + i < len(series.outcomes) else "pass"
            role = {"fail": "fail", "error": "fail", "inconclusive": "inconclusive"}.get(
                outcome, "pass"
            )
            if value is None:
                cell, role = ("?" if row == height - 1 else " "), "inconclusive"
            else:
                cell = BARS[max(0, min(8, round(value / top * height * 8 - low)))]
            if cell == " " and crosses(limits[i], low):
                runs.append(("┈" * column, "limit"))
            elif cell == " " and crosses(control, low):
                runs.append(("╌" * column, "control"))
            else:
                runs.append((cell * column, role))
        if rest > 0:
            if crosses(last_limit, low):
                runs.append(("┈" * rest, "limit"))
            elif crosses(control, low):
                runs.append(("╌" * rest, "control"))
        rows.append(runs)
    return rows


def legend(series: CheckSeries) -> Text:
    """Two lines: the check and its figures; what the lines are (``┈ limit 0.25``…)."""
    text = Text(no_wrap=True, overflow="ellipsis")
    fails = sum(1 for o in series.outcomes if o in ("fail", "error"))
    text.append(f"{series.check}", style="bold")
    text.append(f" · wave {series.wave} · {len(series.values)} measurements, {fails} failed")
    latest = next((v for v in reversed(series.values) if v is not None), None)
    if latest is not None:
        text.append(f" · latest {_figure(latest)}")
    text.append("\n")
    limit = series.limit_at(len(series.values) - 1) if series.values else None
    text.append(f"┈ limit {_figure(limit)}" if limit is not None else "no upper limit")
    median = series.control_median()
    if median is not None:
        text.append(f"   ╌ control median {_figure(median)}")
    return text


class MeasureChart(Widget):
    """One :class:`CheckSeries` as a chart (``series`` is a reactive: assign a new one)."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "measure-chart--axis",
        "measure-chart--pass",
        "measure-chart--fail",
        "measure-chart--inconclusive",
        "measure-chart--limit",
        "measure-chart--control",
    }
    DEFAULT_CSS = """
    MeasureChart { height: 8; }
    """

    series: reactive[CheckSeries | None] = reactive(None, always_update=True)
    """The measurements drawn (None: none recorded)."""

    def __init__(self, series: CheckSeries | None = None, *, id: str | None = None):
        super().__init__(id=id)
        self.set_reactive(MeasureChart.series, series)
        self._strips: list[Strip] | None = None
        self._strips_size = (0, 0)
        self._styles: dict[str, Style] | None = None

    def watch_series(self) -> None:
        self._strips = None
        self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles = None
        self._strips = None

    def render_line(self, y: int) -> Strip:
        # The line API: the chart's runs become segments directly (a Text per chart, through
        # Textual's Content, cost more than everything else on the target detail).
        width, height = self.size.width, max(1, self.size.height)
        if self._strips is None or self._strips_size != (width, height):
            self._strips, self._strips_size = self._make_strips(width, height), (width, height)
        if y < len(self._strips):
            return self._strips[y]
        return Strip.blank(width, self.rich_style)

    def _make_strips(self, width: int, height: int) -> list[Strip]:
        base = self.rich_style
        series = self.series
        if series is None or not series.values:
            text = Segment("no measurements recorded", base + Style(dim=True))
            return [Strip([text]).adjust_cell_length(width, base)]
        if self._styles is None:
            self._styles = {
                role: base + self.get_component_rich_style(f"measure-chart--{role}")
                for role in ("axis", "pass", "fail", "inconclusive", "limit", "control")
            }
        styles = self._styles
        return [
            Strip([Segment(part, styles[role]) for part, role in runs]).adjust_cell_length(
                width, base
            )
            for runs in chart_rows(series, width, height)
        ]
