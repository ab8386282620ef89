"""Metric sparklines: one per check for the selected wave or target, against its threshold."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult, RenderResult
from textual.containers import Vertical, VerticalScroll
from textual.reactive import reactive
from textual.widgets import Label, Sparkline

from sluice.tui.model import ConsoleModel, Limits, Series
from sluice.tui.themes import Palette

BARS = "▁▂▃▄▅▆▇█"
SEVERITY = {"fail": 3, "error": 2, "inconclusive": 1, "pass": 0}


@dataclass(frozen=True)
class MetricData:
    """One check's sparkline and figures: what a :class:`MetricRow` shows."""

    check: str
    label: Text
    values: tuple[float, ...]
    outcomes: tuple[str, ...]
    threshold: float | None
    breach: bool


class MetricSparkline(Sparkline):
    """A sparkline scaled from zero to above its threshold, one bar per measurement.

    Textual's sparkline stretches min..max of its data, which hides how far a value is from its
    limit; here the threshold is a dotted line, and each bar is coloured by the outcome of its
    measurement (the first bar is the baseline).
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "metric-sparkline--pass",
        "metric-sparkline--fail",
        "metric-sparkline--inconclusive",
        "metric-sparkline--baseline",
        "metric-sparkline--threshold",
    }

    outcomes: reactive[tuple[str, ...]] = reactive(())
    """Per bar: baseline, pass, fail, inconclusive or error."""
    threshold: reactive[float | None] = reactive(None)
    """Where the limit line is drawn (None: no limit)."""

    def render(self) -> RenderResult:
        data = list(self.data or [])
        outcomes = list(self.outcomes) + ["pass"] * (len(data) - len(self.outcomes))
        width, height = self.size.width, max(1, self.size.height)
        muted = self.get_component_rich_style("metric-sparkline--baseline")
        if not data or width <= 0:
            return Text("waiting for measurements…", style=muted)
        bar = max(1, min(4, width // len(data)))
        fit = max(1, width // bar)
        data, outcomes = data[-fit:], outcomes[-fit:]
        top = max([*data, self.threshold or 0.0]) * 1.15 or 1.0
        levels = height * len(BARS)
        line_level = None if self.threshold is None else self.threshold / top * levels
        styles = {
            "pass": self.get_component_rich_style("metric-sparkline--pass"),
            "fail": self.get_component_rich_style("metric-sparkline--fail"),
            "error": self.get_component_rich_style("metric-sparkline--fail"),
            "inconclusive": self.get_component_rich_style("metric-sparkline--inconclusive"),
            "baseline": muted,
        }
        line_style = self.get_component_rich_style("metric-sparkline--threshold")
        text = Text(no_wrap=True, overflow="crop")
        for row in range(height):
            low = (height - 1 - row) * len(BARS)
            on_line = line_level is not None and low <= line_level < low + len(BARS)
            for value, outcome in zip(data, outcomes, strict=False):
                level = round(value / top * levels)
                if value > 0:
                    level = max(level, 1)
                fill = level - low
                if fill >= len(BARS):
                    cell, style = "█", styles.get(outcome, muted)
                elif fill > 0:
                    cell, style = BARS[fill - 1], styles.get(outcome, muted)
                elif on_line:
                    cell, style = "╌", line_style
                else:
                    cell, style = " ", None
                text.append(cell * bar, style)
            if on_line:
                text.append("╌" * (width - bar * len(data)), line_style)
            if row < height - 1:
                text.append("\n")
        return text


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def _limit(limits: Limits, baseline: float | None) -> tuple[float | None, str]:
    """The effective limit (where the line is drawn) and how to say it: ``0.179 (base+50%, max 0.25)``."""
    line: float | None = None
    parts = []
    if limits.max_increase is not None:
        parts.append(f"base+{limits.max_increase:.0%}")
        if baseline is not None and baseline > 0:
            line = baseline * (1 + limits.max_increase)
    if limits.max is not None:
        parts.append(f"max {_fmt(limits.max)}")
        line = limits.max if line is None else min(line, limits.max)
    if limits.min is not None:
        parts.append(f"min {_fmt(limits.min)}")
        line = limits.min if line is None else line
    if not parts:
        return None, "none"
    if line is None:
        return None, ", ".join(parts)
    if len(parts) == 1 and not parts[0].startswith("base+"):
        return line, parts[0]
    return line, f"{_fmt(line)} ({', '.join(parts)})"


def combine(series: list[Series], limits: Limits) -> Series:
    """A wave's series: per round, the worst value and outcome across its targets."""
    if len(series) == 1:
        return series[0]
    worst_high = limits.max is not None or limits.max_increase is not None or limits.min is None
    rounds = max((len(s.values) for s in series), default=0)
    out = Series()
    baselines = [s.baseline for s in series if s.baseline is not None]
    out.baseline = statistics.median(baselines) if baselines else None
    for i in range(rounds):
        values = [v for s in series if i < len(s.values) and (v := s.values[i]) is not None]
        outcomes = [s.outcomes[i] for s in series if i < len(s.outcomes)]
        out.values.append((max(values) if worst_high else min(values)) if values else None)
        out.outcomes.append(max(outcomes, key=lambda o: SEVERITY.get(o, 0)))
    return out


def metric_data(
    model: ConsoleModel, wave: int, check: str, target: str | None, palette: Palette
) -> MetricData:
    limits = model.limits.get(check, Limits())
    if target is not None:
        found = model.series.get((wave, check, target))
        parts = [found] if found else []
    else:
        parts = [s for _, s in model.wave_series(wave, check)]
    series = combine(parts, limits) if parts else Series()
    counts = {o: sum(s.count(o) for s in parts) for o in ("pass", "fail", "inconclusive", "error")}
    line, limit_text = _limit(limits, series.baseline)
    current = next((v for v in reversed(series.values) if v is not None), None)
    breach = counts["fail"] > 0
    latest = series.outcomes[-1] if series.outcomes else ""
    label = Text(f"{check}  ", style="bold")
    for outcome, glyph, variable in (
        ("pass", "✓", "metric-pass"),
        ("fail", "✗", "metric-fail"),
        ("inconclusive", "?", "metric-inconclusive"),
        ("error", "!", "metric-fail"),
    ):
        label.append(f"{glyph}{counts[outcome]} ", style=palette.style(variable))
    label.append("\nnow ")
    now_var = {"fail": "metric-fail", "pass": "metric-pass"}.get(latest, "metric-inconclusive")
    label.append(_fmt(current), style=palette.style(now_var, bold=True))
    label.append(f" · base {_fmt(series.baseline)}", style=palette.style("metric-baseline"))
    label.append(f"\nlimit {limit_text}", style=palette.style("metric-threshold"))
    values = ([series.baseline] if series.baseline is not None else []) + list(series.values)
    outcomes = (["baseline"] if series.baseline is not None else []) + list(series.outcomes)
    return MetricData(
        check=check,
        label=label,
        values=tuple(v if v is not None else 0.0 for v in values),
        outcomes=tuple(outcomes),
        threshold=line,
        breach=breach,
    )


class MetricRow(Vertical):
    """One check: figures above, sparkline below."""

    data: reactive[MetricData | None] = reactive(None)
    """What the row shows."""

    def __init__(self, check: str) -> None:
        super().__init__(classes="metric-row")
        self.check = check
        # Held, not queried: an update can land while the row is being removed (a new selection
        # rebuilds the panel), when its children are already gone from the DOM.
        self._label = Label("", classes="metric-label")
        self._spark = MetricSparkline([], classes="metric-spark")

    def compose(self) -> ComposeResult:
        yield self._label
        yield self._spark

    def watch_data(self, data: MetricData | None) -> None:
        if data is None or not self.is_mounted:
            return
        self._label.update(data.label, layout=False)
        self._spark.outcomes = data.outcomes
        self._spark.threshold = data.threshold
        self._spark.data = list(data.values)
        self.set_class(data.breach, "-breach")


class MetricsPanel(VerticalScroll):
    """Shows the checks of one wave (or one target of it)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "metrics"
        self.wave: int | None = None
        self.target: str | None = None
        self._rows: dict[str, MetricRow] = {}

    async def show(
        self, model: ConsoleModel, wave: int | None, target: str | None, palette: Palette
    ) -> None:
        """Point the panel at ``wave`` (and ``target``); rebuild rows if the checks differ."""
        self.wave, self.target = wave, target
        view = model.waves.get(wave or 0)
        checks = model.checks_of(view) if view else ()
        if view is None:
            self.border_title = "metrics"
        else:
            self.border_title = f"metrics · {target or f'W{view.number} {view.name}'}"
        if tuple(self._rows) != tuple(checks):
            await self.remove_children()
            self._rows = {c: MetricRow(c) for c in checks}
            if self._rows:
                await self.mount_all(self._rows.values())
            else:
                await self.mount(
                    Label("Select a wave or a target to see its checks.", classes="empty-hint")
                )
        self.repaint(model, palette)

    def repaint(self, model: ConsoleModel, palette: Palette) -> None:
        if self.wave is None:
            return
        for check, row in self._rows.items():
            row.data = metric_data(model, self.wave, check, self.target, palette)
