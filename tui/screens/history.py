"""History: past rollouts, newest first; ``enter`` shows one, ``p`` replays it, ``t`` backtests
it with today's checks, ``u`` restores the estate to the moment it finished."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.screen import Screen
from textual.widgets import DataTable, Label

from sluice.engine.app import report
from sluice.engine.model.estate import Estate
from sluice.engine.store.history import History, RolloutRecord
from sluice.tui.screens.covered import Covered
from sluice.tui.screens.matrix import MatrixScreen
from sluice.tui.screens.modals import ConfirmScreen, TextScreen
from sluice.tui.screens.replay import ReplayScreen
from sluice.tui.widgets.keys_footer import KeysFooter


def _shown_path(path: Path | str, estate: Path) -> str:
    """The history file relative to the estate file's directory (as the estate names it)."""
    if isinstance(path, str):  # a URL
        return path
    try:
        return str(Path(path).resolve().relative_to(Path(estate).resolve().parent))
    except ValueError:
        return str(path)


class HistoryScreen(Covered, Screen[None]):
    BINDINGS = [
        Binding("enter", "show", "Show", id="history.show"),
        Binding("p", "replay", "Replay", id="history.replay"),
        Binding("b", "backtest", "Backtest", id="history.backtest"),
        Binding("u", "restore", "Restore to here", id="history.restore"),
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
        yield KeysFooter()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for column in report.HISTORY_COLUMNS:
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
            table.add_row(*report.history_row(r, self.records.values()), key=str(r.id))
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

    def action_backtest(self) -> None:
        """Re-judge the selected rollout's measurements with the estate's checks of today."""
        from sluice.engine.app.backtest import backtest, backtest_lines

        record = self._selected()
        if record is None:
            self.notify("no rollout selected", severity="warning")
            return
        lines = backtest_lines(backtest(self.history, record, self.estate))
        self.app.push_screen(TextScreen(f"backtest of rollout #{record.id}", lines))

    def action_restore(self) -> None:
        """Put every target and module back to what it ran when the selected rollout ended."""
        from sluice.tui.restore import drive_restore, parts_to, point_of, preview_text

        record = self._selected()
        console = getattr(self.app, "console_screen", None)
        driver = getattr(self.app, "driver", None)
        point = point_of(record) if record is not None else None
        if point is None or console is None or driver is None:
            self.notify("select a finished rollout to restore to", severity="warning")
            return
        if driver.read_only or driver.active():
            why = driver.read_only or "a rollout is running: let it finish or abort it first"
            self.notify(why, title="refused", severity="warning", markup=False)
            return
        parts = parts_to(self.history, self.estate, point)
        if not parts:
            self.notify(f"nothing to restore: every target runs what it ran at {point.label}")
            return

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            self.app.pop_screen()

            async def run() -> None:
                message = await drive_restore(console, point)
                console.notify(message, timeout=10, markup=False)

            console.run_worker(run(), group="restore", exclusive=True)

        body = preview_text(parts, point)
        self.app.push_screen(
            ConfirmScreen(f"Restore to {point.label}?", body, confirm="Restore"), answered
        )

    def action_targets(self) -> None:
        """The estate matrix; a target's detail there draws the selected rollout's measurements."""
        record = self._selected()
        if record is None:
            self.notify("no rollout selected", severity="warning")
            return
        self.app.push_screen(MatrixScreen(self.estate, self.history, rollout_id=record.id))

    def action_close(self) -> None:
        self.app.pop_screen()
