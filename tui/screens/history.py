"""History: past rollouts, newest first; ``enter`` shows one, ``p`` replays it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Label

from sluice.engine.app import report
from sluice.engine.app.outcomes import outcome_text
from sluice.engine.model.estate import Estate
from sluice.engine.model.units import format_duration
from sluice.engine.store.history import History, RolloutRecord
from sluice.tui.screens.matrix import MatrixScreen
from sluice.tui.screens.modals import TextScreen
from sluice.tui.screens.replay import ReplayScreen

COLUMNS = ("id", "kind", "module", "from → to", "who", "started", "duration", "outcome", "waves")


def _shown_path(path: Path, estate: Path) -> str:
    """The history file relative to the estate file's directory (as the estate names it)."""
    try:
        return str(Path(path).resolve().relative_to(Path(estate).resolve().parent))
    except ValueError:
        return str(path)


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


class HistoryScreen(Screen[None]):
    BINDINGS = [
        Binding("enter", "show", "Show", id="history.show"),
        Binding("p", "replay", "Replay", id="history.replay"),
        Binding("t", "targets", "Targets", id="history.targets"),
        Binding("escape", "close", "Back", id="history.close"),
    ]

    def __init__(self, estate: Estate, history: History, *, speed: float = 10.0):
        super().__init__(id="history")
        self.estate = estate
        self.history = history
        self.speed = speed
        self.records: dict[int, RolloutRecord] = {}

    def compose(self) -> ComposeResult:
        yield Label(
            f" history · {self.estate.name} · {_shown_path(self.history.path, self.estate.path)}",
            id="history-title",
            markup=False,
        )
        yield DataTable(id="history-table", cursor_type="row", zebra_stripes=True)
        yield Label("", id="history-empty")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for column in COLUMNS:
            table.add_column(column, key=column)
        self.reload()
        table.focus()

    def on_screen_resume(self) -> None:
        self.reload()

    def reload(self) -> None:
        table = self.query_one(DataTable)
        keep = table.cursor_row
        table.clear()
        self.records = {r.id: r for r in self.history.rollouts()}
        for r in self.records.values():
            table.add_row(
                str(r.id),
                r.kind,
                r.module,
                f"{r.from_versions} → {r.version}",
                r.actor,
                _when(r.started),
                "—" if r.duration is None else format_duration(r.duration),
                outcome_text(r, self.records.values()),
                f"{r.waves_done}/{r.waves_total}",
                key=str(r.id),
            )
        empty = self.query_one("#history-empty", Label)
        empty.display = not self.records
        empty.update("No rollouts recorded yet. Start one from the console (n).")
        if self.records:
            table.move_cursor(row=min(keep, len(self.records) - 1))

    def _selected(self) -> RolloutRecord | None:
        table = self.query_one(DataTable)
        if not self.records or table.cursor_row < 0:
            return None
        key = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value
        return self.records.get(int(key or 0))

    def action_show(self) -> None:
        record = self._selected()
        if record is None:
            self.notify("no rollout selected", severity="warning")
            return
        lines = report.show_text(self.history, record)
        self.app.push_screen(TextScreen(f"rollout #{record.id}", lines))

    @on(DataTable.RowSelected)
    def _row_selected(self) -> None:
        self.action_show()

    def action_replay(self) -> None:
        record = self._selected()
        if record is None:
            self.notify("no rollout selected", severity="warning")
            return
        self.app.push_screen(ReplayScreen(self.estate, self.history, record.id, speed=self.speed))

    def action_targets(self) -> None:
        """The estate matrix; a target's detail there draws the selected rollout's measurements."""
        record = self._selected()
        if record is None:
            self.notify("no rollout selected", severity="warning")
            return
        self.app.push_screen(MatrixScreen(self.estate, self.history, rollout_id=record.id))

    def action_close(self) -> None:
        self.app.pop_screen()
