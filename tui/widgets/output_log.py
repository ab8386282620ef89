"""The target detail's output pane: a :class:`~textual.widgets.Log` measured as it is written.

Textual's Log measures the width of new lines on a thread and sets its virtual size when that
returns: a second layout, and a second frame, after the one that showed the lines — the detail
would be drawn twice for every target shown. An apply's output is at most a few thousand lines,
measured here at once (a millisecond or two); a longer write is left to the thread.
"""

from __future__ import annotations

from rich.cells import cell_len
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
