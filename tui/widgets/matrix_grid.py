"""The estate matrix's rows, drawn with Textual's line API: only the rows on screen are built.

A :class:`~textual.widgets.DataTable` builds and measures every cell of every row up front,
which takes seconds for 1,000 targets on a busy machine. Here the screen gives a row count and a
function that makes one row's text: a row's text and strip are made only when it scrolls into
view (and cached until the rows, the width or the cursor change).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
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

    #: lines drawn above the rows (a subclass's header), in the virtual height too
    HEADER_LINES: ClassVar[int] = 0

    cursor: reactive[int] = reactive(0)
    """The highlighted row."""

    class Chosen(Message):
        """A click on a row (keys: the screen's ``enter``)."""

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self.count = 0
        self._row: Callable[[int], Text] = lambda row: Text()
        self._strips: dict[int, Strip] = {}
        #: (the widget's style, the cursor's), looked up once per restyle: ``rich_style``
        #: walks every ancestor's styles, which cost more than the row itself, per row.
        self._styles: tuple[Style, Style] | None = None
        self._width = 0  # the width the cached strips were made for

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles = None
        self._strips.clear()

    def set_rows(self, count: int, row: Callable[[int], Text], width: int, cursor: int = 0) -> None:
        """``count`` rows, ``row(i)`` the text of row ``i`` (called only for rows on screen),
        ``width`` the widest row's cells."""
        self.count = count
        self._row = row
        self._strips.clear()
        # The rows' own width: padded to the widget's, it would be wider than the room beside
        # the vertical scrollbar, and a horizontal one would come and go (a layout each time).
        self.virtual_size = Size(width, count + self.HEADER_LINES)
        self.set_reactive(MatrixGrid.cursor, max(0, min(cursor, count - 1)))
        if self.size.height:  # laid out (a reopened matrix): scroll now, not a frame later
            self._show_cursor()
        else:  # once laid out: it knows its height then
            self.call_after_refresh(self._show_cursor)
        self.refresh()

    def watch_cursor(self, old: int, new: int) -> None:
        self._strips.pop(old, None)
        self._strips.pop(new, None)
        self._show_cursor()
        self.refresh()

    def _show_cursor(self) -> None:
        if self.count:
            self.scroll_to_region(
                Region(0, self.cursor, 1, 1), animate=False, force=True, immediate=True
            )

    def action_move(self, step: int) -> None:
        if self.count:
            self.cursor = max(0, min(self.count - 1, self.cursor + step))

    def on_click(self, event: Click) -> None:
        row = event.y + self.scroll_offset.y
        if 0 <= row < self.count:
            self.cursor = row
            self.post_message(self.Chosen())

    def render_line(self, y: int) -> Strip:
        row = y + self.scroll_offset.y
        width = self.size.width
        if self._styles is None:
            self._styles = (self.rich_style, self.get_component_rich_style("matrix-grid--cursor"))
        base, cursor_style = self._styles
        if row >= self.count:
            return Strip.blank(width, base)
        full = max(self.virtual_size.width, width)
        if full != self._width:  # resized: the strips were padded to another width
            self._strips.clear()
            self._width = full
        strip = self._strips.get(row)
        if strip is None:
            # The widget's style under every cell; the cursor's over them (its colours win, or
            # blue text on the blue cursor would vanish).
            cursor = cursor_style if row == self.cursor else None
            segments = Segment.apply_style(self._row(row).render(self.app.console), base, cursor)
            strip = Strip(list(segments)).extend_cell_length(full, cursor or base)
            self._strips[row] = strip
        return strip.crop(self.scroll_offset.x, self.scroll_offset.x + width)
