"""``m``: the estate matrix — targets × modules, the version each runs, grouped by channel.

A cell's colour (and its mark, never colour alone) says its state: ``●`` in the running rollout,
``≠`` drifted per the last ``sluice drift``, ``▼`` behind the module's newest published version,
plain when it runs the newest. ``/`` filters by target or channel name; ``enter`` opens the
target's detail. The rows are plain data (:mod:`sluice.tui.matrix_data`) made into text only
when they scroll into view, so 1,000 targets open as fast as 10.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Input, Label

from sluice.engine.model.estate import Estate
from sluice.engine.store.history import History
from sluice.tui.estate_data import current_versions
from sluice.tui.matrix_data import MARKS, STYLES, Cell, Drift, MatrixRows, Running, matrix_rows
from sluice.tui.screens.covered import Covered
from sluice.tui.screens.reshown import Reshown
from sluice.tui.screens.target_detail import TargetDetailScreen
from sluice.tui.themes import Palette
from sluice.tui.widgets.keys_footer import KeysFooter
from sluice.tui.widgets.matrix_grid import MatrixGrid


class MatrixScreen(Reshown, Covered, Screen[None]):
    """Every target's version of every module.

    Args:
        running: what the running rollout is doing, by (module, target) (read when painted).
        rollout_id: the rollout whose measurements a target's detail draws (history's choice).
        detail_options: passed on to :class:`TargetDetailScreen` (live output, refresh).
        open_detail: opens a target's detail over this screen (the console's: its one detail
            screen, read before it is shown); None: a new detail screen each time.
    """

    BINDINGS = [
        Binding("escape", "close", "Back", id="matrix.close"),
        Binding("slash", "filter", "Filter", id="matrix.filter"),
        Binding("enter", "detail", "Detail", id="matrix.detail"),
    ]

    #: The legend's states, in the order of their precedence in a cell.
    LEGEND: ClassVar = (
        ("rollout", "in the running rollout"),
        ("drifted", "drifted"),
        ("behind", "behind the newest"),
    )

    def __init__(
        self,
        estate: Estate,
        history: History,
        *,
        running: Callable[[], Running] | None = None,
        rollout_id: int | None = None,
        detail_options: Callable[[str], dict[str, object]] | None = None,
        open_detail: Callable[[Screen[None], str], None] | None = None,
    ):
        super().__init__(id="matrix")
        self.estate = estate
        self.history = history
        self.running = running or dict
        self.rollout_id = rollout_id
        self.detail_options = detail_options
        self.open_detail = open_detail
        self.modules = list(estate.modules)
        self.filter_text = ""
        self.rows: list[str] = []  # target per table row ("" for a channel's heading row)
        self._shown = False
        #: times :meth:`paint` ran (the console reuses one matrix screen: a bench tells a fresh
        #: paint from the last one by it)
        self.painted = 0
        self._matrix = MatrixRows()
        self._palette = Palette({})

    def compose(self) -> ComposeResult:
        yield Label("", id="matrix-title", markup=False)
        yield Input(placeholder="filter targets or channels…", id="matrix-filter")
        yield Label("", id="matrix-header", markup=False)
        yield MatrixGrid(id="matrix-table")
        yield Label("", id="matrix-legend")
        yield KeysFooter()

    def on_mount(self) -> None:
        self.query_one("#matrix-filter").display = False
        self.widths = [max([len(n) for n in self.estate.targets] + [20]) + 3]
        titles = ["target"]
        for module in self.modules:
            newest = self.estate.modules[module].versions[-1]
            title = f"{module} (newest {newest})"
            widest = max(len(v) for v in self.estate.modules[module].versions)
            self.widths.append(max(len(title), widest + 16) + 2)
            titles.append(title)
        header = "".join(f"{t:<{w}}" for t, w in zip(titles, self.widths, strict=True))
        self.query_one("#matrix-header", Label).update(" " + header)
        self.paint()
        self.query_one(MatrixGrid).focus()

    @property
    def palette(self) -> Palette:
        variables = {**self.app.get_theme_variable_defaults(), **self.app.current_theme.variables}
        return Palette(variables)

    def paint(self) -> None:
        grid = self.query_one(MatrixGrid)
        keep = self.rows[grid.cursor] if self.rows and grid.cursor < len(self.rows) else ""
        versions = current_versions(self.estate, self.history)
        self._palette = self.palette
        self._matrix = matrix_rows(
            self.estate, versions, self.running(), self._drift(), self.filter_text
        )
        self.rows = self._matrix.targets
        self._paint_texts(self._matrix.tally, len(versions))
        if keep and keep in self.rows:
            cursor = self.rows.index(keep)
        else:
            cursor = 1 if len(self.rows) > 1 else 0
        grid.set_rows(len(self.rows), self._row_text, sum(self.widths) + 1, cursor)
        self.painted += 1

    def _drift(self) -> Drift:
        """The last ``sluice drift`` result of each module, through the reader the tree uses."""
        from sluice.engine.app.iac import last_drift  # a small file read; the tofu code on demand

        return {
            (module, target): words
            for module in self.modules
            for target, words in last_drift(self.estate, module).items()
        }

    def _row_text(self, row: int) -> Text:
        """Row ``row`` as text (called only for the rows on screen)."""
        matrix = self._matrix
        if row in matrix.headings:
            return Text(f" {matrix.headings[row]}", style="bold")
        line = Text(f"   {matrix.targets[row]:<{self.widths[0] - 2}}")
        for cell, width in zip(matrix.cells[row], self.widths[1:], strict=True):
            text = self._cell_text(cell)
            text.truncate(width, pad=True)
            line.append_text(text)
        return line

    def _cell_text(self, cell: Cell) -> Text:
        palette = self._palette
        if cell.version is None:
            return Text("—  (not run here)", style=palette.style("log-muted"))
        text = Text(f"{MARKS[cell.state]} {cell.version}", style=palette.style(STYLES[cell.state]))
        if cell.note:
            style = STYLES["drifted"] if cell.state == "drifted" else "log-muted"
            text.append(f"  {cell.note}", style=palette.style(style))
        return text

    def _paint_texts(self, tally: dict[str, int], modules: int) -> None:
        total = len(self.estate.targets)
        shown = f"{tally['shown']} of {total} targets" if self.filter_text else f"{total} targets"
        self.query_one("#matrix-title", Label).update(
            f" estate matrix · {self.estate.name} · {shown} × {modules} modules"
            + (f" · filter “{self.filter_text}”" if self.filter_text else ""),
            layout=False,  # one line, as wide as the screen: no layout for new words
        )
        palette = self._palette
        legend = Text(" ")
        for state, words in self.LEGEND:
            legend.append(f"{MARKS[state]} {words}", palette.style(STYLES[state]))
            legend.append(f" {tally[state]}  ")
        legend.append("runs the newest", palette.style(STYLES["newest"]))
        legend.append("  (counts of target·module cells) · / filter · enter detail", style="dim")
        self.query_one("#matrix-legend", Label).update(legend, layout=False)  # (one line)

    # ------------------------------------------------------------------ keys

    def selected_target(self) -> str | None:
        cursor = self.query_one(MatrixGrid).cursor
        if not self.rows or cursor >= len(self.rows):
            return None
        return self.rows[cursor] or None

    def action_detail(self) -> None:
        target = self.selected_target()
        if target is None:
            self.notify("select a target row (not a channel heading)", severity="warning")
            return
        if self.open_detail is not None:
            self.open_detail(self, target)
            return
        options = self.detail_options(target) if self.detail_options else {}
        self.app.push_screen(
            TargetDetailScreen(
                self.estate,
                self.history,
                target,
                rollout_id=self.rollout_id,
                **options,  # type: ignore[arg-type]
            )
        )

    def on_matrix_grid_chosen(self) -> None:
        self.action_detail()

    def action_filter(self) -> None:
        box = self.query_one("#matrix-filter", Input)
        box.display = True
        box.focus()

    def action_close(self) -> None:
        box = self.query_one("#matrix-filter", Input)
        if box.has_focus:
            box.value = ""
            box.display = False
            self.query_one(MatrixGrid).focus()
            return
        self.app.pop_screen()

    @on(Input.Changed, "#matrix-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self.paint()

    @on(Input.Submitted, "#matrix-filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        self.query_one("#matrix-filter", Input).display = bool(event.value)
        self.query_one(MatrixGrid).focus()

    def on_screen_resume(self, event: events.ScreenResume) -> None:
        self.keep_styles(event)
        if self._shown:  # back from a target's detail (the first paint is on_mount's)
            self.paint()
        self._shown = True
