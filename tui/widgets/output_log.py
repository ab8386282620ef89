"""The target detail's output pane: a :class:`~textual.widgets.Log` measured as it is written.

Textual's Log measures the width of new lines on a thread and sets its virtual size when that
returns: a second layout, and a second frame, after the one that showed the lines — the detail
would be drawn twice for every target shown. An apply's output is at most a few thousand lines,
measured here at once (a millisecond or two); a longer write is left to the thread.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len
from textual.geometry import Size
from textual.widgets import Log

#: Writes up to this many lines are measured at once.
MEASURE_AT_ONCE = 5000


class OutputLog(Log):
    """A :class:`~textual.widgets.Log` whose width is known in the frame its lines are drawn."""

    def _update_size(self, updates: int, lines: list[str]) -> None:  # type: ignore[override]
        if len(lines) > MEASURE_AT_ONCE:
            super()._update_size(updates, lines)
        elif lines:
            widest = max(cell_len(self._process_line(line)) for line in lines)
            self._update_maximum_width(updates, widest)

    def replace(self, lines: Sequence[str]) -> None:
        """Show ``lines`` instead of what is shown, scrolled to their end.

        ``clear()`` then ``write_lines()`` sizes the log three times (empty, the lines' count,
        then their width): each a layout of the screen, one more frame under load. Here it is
        sized once, with the lines' own size — no layout at all when they are as many and as
        wide as the last target's (and the scroll stays at the end, so it does not move).
        """
        new = [part for line in lines for part in line.splitlines()]
        measured = len(new) <= MEASURE_AT_ONCE
        self._lines[:] = new
        self._render_line_cache.clear()
        self._updates += 1
        self._clear_y = 0
        self._width = (
            max((cell_len(self._process_line(x)) for x in new), default=0) if measured else 0
        )
        self.virtual_size = Size(self._width, len(new))
        if not measured:
            super()._update_size(self._updates, new)  # on a thread, as Log does
        self.refresh()
        if self.auto_scroll:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
