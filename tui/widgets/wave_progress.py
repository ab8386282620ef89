"""Wave progress: one row per wave — progress bar, counts, failure budget, and the gate (with why)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.reactive import reactive
from textual.widgets import Label, ProgressBar

from sluice.engine.model.units import format_duration
from sluice.tui.glyphs import counts_text, wave_glyph
from sluice.tui.model import ConsoleModel, WaveView
from sluice.tui.themes import Palette

FINISHED = ("ok", "failed", "noop", "rolled_back", "aborted", "unknown")
WHY_LINES = 3


@dataclass(frozen=True)
class WaveRowData:
    """Everything a wave row shows; rows repaint only when this changes."""

    title: Text
    done: int
    total: int
    budget: Text
    gate: Text
    failing: bool


def _names(names: list[str], most: int = 2) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" +{len(names) - most}" if len(names) > most else "")


def why_lines(wave: WaveView, palette: Palette) -> list[Text]:
    """For a failed or inconclusive gate: which check, which targets, value vs limit and baseline."""
    lines: list[Text] = []
    for check, data in wave.gate_checks.items():
        bad = [
            (target, series)
            for target, series in data.get("targets", {}).items()
            if series.get("latest") != "pass"
        ]
        if not bad:
            continue
        failing = [t for t, s in bad if s.get("fails", 0) or s.get("latest") == "fail"]
        variable = "gate-failed" if failing else "gate-inconclusive"

        def value_of(item: tuple[str, dict]) -> float:
            values = [v for v in item[1].get("values", []) if v is not None]
            return values[-1] if values else float("-inf")

        worst_target, worst = max(bad, key=value_of)
        reason = worst.get("reason") or worst.get("latest") or "no measurement"
        base = worst.get("baseline")
        if base is not None and "baseline" not in reason:
            reason += f" (baseline {base:.4g})"
        line = Text("  ✗ " if failing else "  ? ", style=palette.style(variable))
        line.append(f"{check}", style=palette.style(variable, bold=True))
        line.append(f" on {_names([t for t, _ in bad])}: {reason}")
        lines.append(line)
    if not lines:
        lines = [Text(f"  {r}", style=palette.style("gate-failed")) for r in wave.reasons]
    if len(lines) > WHY_LINES:
        extra = len(lines) - WHY_LINES + 1
        lines = [*lines[: WHY_LINES - 1], Text(f"  … and {extra} more checks", style="dim")]
    return lines


def gate_text(model: ConsoleModel, wave: WaveView, palette: Palette) -> Text:
    glyph, variable, word = wave_glyph(wave.status)
    style = palette.style(variable)
    status = wave.status
    checks = ", ".join(model.checks_of(wave)) or "no checks"
    if status == "pending":
        return Text(
            f"{wave.gate} gate · soak {format_duration(wave.soak)} · blast {wave.blast_radius:.0%}",
            style=palette.style("log-muted"),
        )
    if status == "applying":
        return Text(f"{glyph} applying · then soak {format_duration(wave.soak)}", style=style)
    if status == "soaking":
        left = model.soak_left(wave)
        text = Text(f"{glyph} soaking", style=style)
        if left is not None:
            text.append(f": {format_duration(left)} left")
        text.append(f" · {checks}")
        return text
    if status in ("awaiting_entry", "held"):
        # Nothing of the wave has started: say what it waits for ("production needs approval
        # to start: 0 of 1", "production opens Mon 09:00 Europe/Berlin — in 2h13m").
        text = Text(f"{glyph} {wave.detail}", style=style)
        text.append(
            " — press a to approve" if status == "awaiting_entry" else " — b bypasses a window"
        )
        return text
    head = {
        "awaiting_approval": "gate passed — awaiting approval: press a",
        "inconclusive": "gate INCONCLUSIVE — approve (a) or bypass (b)",
        "halted": "HALTED — roll back (r), bypass (b) or abort (x)",
        "failed": "gate FAILED",
        "rolled_back": "rolled back",
        "rolling_back": "rolling back…",
        "passed": "gate passed" + (" (soak ended early)" if wave.early else ""),
        "approved": "gate passed · approved",
        "bypassed": "gate bypassed",
        "skipped": "nothing to change",
    }.get(status, word)
    if status == "halted" and wave.verdict == "failed":
        head = "gate FAILED — roll back (r), bypass (b) or abort (x)"
    if status == "rolled_back" and model.running() and model.current_wave == wave.number:
        head = "rolled back — n starts a fixed version, x aborts this rollout"
    text = Text(f"{glyph} {head}", style=style)
    left = model.watch_left(wave)
    if left is not None:
        text.append(
            f" · watching {format_duration(left)} left", style=palette.style("gate-soaking")
        )
    elif wave.watch_outcome == "regressed":
        text.append(" · REGRESSED after it passed", style=palette.style("wave-failed"))
    if status in ("halted", "inconclusive", "failed", "rolled_back", "bypassed") or (
        wave.verdict in ("failed", "inconclusive")
    ):
        if wave.detail and not wave.gate_checks:
            text.append(f"\n  {wave.detail}", style=style)
        for line in why_lines(wave, palette) if wave.gate_checks else []:
            text.append("\n")
            text.append_text(line)
    return text


def row_data(model: ConsoleModel, wave: WaveView, palette: Palette) -> WaveRowData:
    counts = model.counts(wave)
    done = sum(counts.get(s, 0) for s in FINISHED)
    glyph, variable, _ = wave_glyph(wave.status)
    title = Text(f"{glyph} ", style=palette.style(variable))
    title.append(f"W{wave.number} {wave.name}", style="bold")
    failed = counts.get("failed", 0)
    over = failed > wave.budget
    budget = counts_text(counts, palette)
    budget.append("  ")
    if wave.status == "pending":
        tolerates = {0: "no failures", 1: "1 failure"}.get(wave.budget, f"{wave.budget} failures")
        budget.append(f"tolerates {tolerates}", style=palette.style("log-muted"))
    else:
        budget.append(
            f"{failed} failed (budget {wave.budget})",
            style=palette.style("wave-failed" if over else "log-muted"),
        )
    if over:
        budget.append(" — budget spent", style=palette.style("wave-failed", bold=True))
    return WaveRowData(
        title=title,
        done=done,
        total=max(1, len(wave.targets)),
        budget=budget,
        gate=gate_text(model, wave, palette),
        failing=over or wave.status in ("halted", "failed", "inconclusive"),
    )


class WaveRow(Vertical):
    """One wave. ``data`` is the reactive the row draws from."""

    data: reactive[WaveRowData | None] = reactive(None, always_update=False)
    """What the row shows (a new value repaints it; an equal one does nothing)."""

    def __init__(self, number: int) -> None:
        super().__init__(id=f"wave-{number}", classes="wave-row")
        self.number = number
        self._gate_shape = ""
        # Held, not queried: an update can land while the row is being removed (a new plan
        # rebuilds the pane), when its children are already gone from the DOM.
        self._title = Label("", classes="wave-title")
        self._bar = ProgressBar(total=1, show_eta=False, classes="wave-bar")
        self._budget = Label("", classes="wave-budget")
        self._gate = Label("", classes="wave-gate")

    def compose(self) -> ComposeResult:
        with Horizontal(classes="wave-line"):
            yield self._title
            yield self._bar
        yield self._budget
        yield self._gate

    def watch_data(self, data: WaveRowData | None) -> None:
        if data is None or not self.is_mounted:
            return
        # Fixed-height cells repaint without a layout pass; the gate text re-lays out only when
        # its shape changes (a soak countdown changes digits, not lines).
        self._title.update(data.title, layout=False)
        self._bar.update(total=data.total, progress=data.done)
        self._budget.update(data.budget, layout=False)
        shape = re.sub(r"\d+", "#", data.gate.plain)
        self._gate.update(data.gate, layout=shape != self._gate_shape)
        self._gate_shape = shape
        self.set_class(data.failing, "-failed")


class WaveProgress(VerticalScroll):
    """The rows, rebuilt for a new plan and otherwise updated row by row."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "waves"
        self._rows: dict[int, WaveRow] = {}

    async def rebuild(self, model: ConsoleModel, palette: Palette) -> None:
        await self.remove_children()
        self._rows = {n: WaveRow(n) for n in sorted(model.waves)}
        if not self._rows:
            await self.mount(
                Label(
                    "No rollout yet.\n\nPress n to pick a module and version, "
                    "see the plan, and start it.\nPress h for history, ? for every key.",
                    classes="empty-hint",
                )
            )
            return
        await self.mount_all(self._rows.values())
        for row in self._rows.values():
            row.data = row_data(model, model.waves[row.number], palette)

    def refresh_waves(self, model: ConsoleModel, palette: Palette, numbers: set[int]) -> None:
        for number in numbers:
            row = self._rows.get(number)
            wave = model.waves.get(number)
            if row is not None and wave is not None:
                row.data = row_data(model, wave, palette)

    def mark(self, *, selected: int | None, current: int | None) -> None:
        for number, row in self._rows.items():
            row.set_class(number == selected, "-selected")
            row.set_class(number == current, "-current")
        if selected in self._rows:
            self.scroll_to_widget(self._rows[selected], animate=False)
