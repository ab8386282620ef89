"""The estate matrix's rows, drawn with Textual's line API: only the rows on screen are rendered.

A :class:`~textual.widgets.DataTable` builds and measures every cell of every row up front,
which takes seconds for 1,000 targets on a busy machine; here a row is turned into a strip only
when it scrolls into view (and cached until the rows, the width or the cursor change).
"""

from __future__ import annotations

from typing import ClassVar

from rich.segment import Segment
from rich.text import Text
from textual.binding import Binding
from textual.events import Click
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip


class MatrixGrid(ScrollView, can_focus=True):
    """Rows of text with a cursor; ``up``/``down``/``pageup``/``pagedown``/``home``/``end``."""

    BINDINGS = [
        Binding("up", "move(-1)", show=False),
        Binding("down", "move(1)", show=False),
        Binding("pageup", "move(-20)", show=False),
        Binding("pagedown", "move(20)", show=False),
        Binding("home", "move(-1000000)", show=False),
        Binding("end", "move(1000000)", show=False),
    ]
    COMPONENT_CLASSES: ClassVar[set[str]] = {"matrix-grid--cursor"}
    DEFAULT_CSS = """
    MatrixGrid { background: $surface; }
    MatrixGrid > .matrix-grid--cursor {
        background: $block-cursor-background;
        color: $block-cursor-foreground;
        text-style: bold;
    }
    """

    cursor: reactive[int] = reactive(0)
    """The highlighted row."""

    class Chosen(Message):
        """A click on a row (keys: the screen's ``enter``)."""

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self.lines: list[Text] = []
        self._strips: dict[int, Strip] = {}

    def set_lines(self, lines: list[Text], cursor: int = 0) -> None:
        self.lines = lines
        self._strips.clear()
        width = max((line.cell_len for line in lines[:200]), default=0)
        self.virtual_size = Size(max(width, self.size.width), len(lines))
        self.set_reactive(MatrixGrid.cursor, max(0, min(cursor, len(lines) - 1)))
        self.call_after_refresh(self._show_cursor)  # once laid out: it knows its height then
        self.refresh()

    def watch_cursor(self, old: int, new: int) -> None:
        self._strips.pop(old, None)
        self._strips.pop(new, None)
        self._show_cursor()
        self.refresh()

    def _show_cursor(self) -> None:
        if self.lines:
            self.scroll_to_region(Region(0, self.cursor, 1, 1), animate=False, force=True)

    def action_move(self, step: int) -> None:
        if self.lines:
            self.cursor = max(0, min(len(self.lines) - 1, self.cursor + step))

    def on_click(self, event: Click) -> None:
        row = event.y + self.scroll_offset.y
        if 0 <= row < len(self.lines):
            self.cursor = row
            self.post_message(self.Chosen())

    def on_resize(self) -> None:
        self._strips.clear()

    def render_line(self, y: int) -> Strip:
        row = y + self.scroll_offset.y
        width = self.size.width
        if row >= len(self.lines):
            return Strip.blank(width, self.rich_style)
        strip = self._strips.get(row)
        if strip is None:
            # The widget's style under every cell; the cursor's over them (its colours win, or
            # blue text on the blue cursor would vanish).
            cursor = (
                self.get_component_rich_style("matrix-grid--cursor") if row == self.cursor else None
            )
            segments = Segment.apply_style(
                self.lines[row].render(self.app.console), self.rich_style, cursor
            )
            width = max(self.virtual_size.width, self.size.width)
            strip = Strip(list(segments)).extend_cell_length(width, cursor or self.rich_style)
            self._strips[row] = strip
        return strip.crop(self.scroll_offset.x, self.scroll_offset.x + width)
