"""The target detail's ledger: a header line and a row per ledger entry, drawn with the line API.

A :class:`~textual.widgets.DataTable` rebuilt for each target shown (its columns' widths are the
new rows') renders every cell through Rich, measures its rows on the next idle and lays the
screen out again: at 1,000 targets with a rollout streaming that was a third of what ``enter``
took. Here the rows are text, padded to their columns' widths when set, and each line is made
into a strip only when drawn (:class:`~sluice.tui.widgets.matrix_grid.MatrixGrid`'s cursor and
keys); the header stays on top and scrolls sideways with the rows.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.events import Click
from textual.geometry import Region
from textual.strip import Strip

from sluice.tui.widgets.matrix_grid import MatrixGrid

#: Spaces between two columns.
GAP = 2


class LedgerTable(MatrixGrid):
    """``columns`` over rows of cells; ``up``/``down``… move the highlighted row."""

    HEADER_LINES = 1
    #: the grid's keys, and ``left``/``right`` to see the columns off to the side (as a
    #: DataTable with a row cursor does)
    BINDINGS = [
        Binding("left", "scroll_left", show=False),
        Binding("right", "scroll_right", show=False),
    ]

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self._header = Text()
        self._texts: list[Text] = []

    @property
    def row_count(self) -> int:
        return self.count

    def set_table(self, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """Show ``rows`` (cells as text) under ``columns``, the cursor on the first row."""
        widths = [len(c) for c in columns]
        for row in rows:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

        def line(cells: Sequence[str]) -> str:
            return " " + (" " * GAP).join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True))

        self._header = Text(line(columns), style="bold")
        self._texts = [Text(line(row)) for row in rows]
        width = sum(widths) + GAP * (len(widths) - 1) + 2
        self.set_rows(len(rows), self._texts.__getitem__, width, 0)
        if self.scroll_x:  # another target's table: from its first column again
            self.scroll_to(x=0, animate=False, immediate=True)

    def _show_cursor(self) -> None:
        # Row r is drawn on line r + 1 (under the header): keep that line in view too.
        if self.count:
            self.scroll_to_region(
                Region(0, self.cursor, 1, 2), animate=False, force=True, immediate=True
            )

    def on_click(self, event: Click) -> None:
        event.prevent_default()
        row = event.y - 1 + self.scroll_offset.y
        if event.y >= 1 and 0 <= row < self.count:
            self.cursor = row

    def render_line(self, y: int) -> Strip:
        if y > 0:
            return super().render_line(y - 1)
        base = self.rich_style
        full = max(self.virtual_size.width, self.size.width)
        segments = Segment.apply_style(self._header.render(self.app.console), base)
        strip = Strip(list(segments)).extend_cell_length(full, base + Style())
        return strip.crop(self.scroll_offset.x, self.scroll_offset.x + self.size.width)
