"""The log: the selected target's apply output (streamed), or the rollout's event log.

A target's output comes from the events (live, interleaved as printed). Where they do not hold
all of it — a finished apply whose output was elided in the event stream (and so in history),
rolled out of the buffer, or never seen by this console (a restart, a replay) — the pane reads
the apply's spool instead (:func:`sluice.engine.app.spools.output_tail`, what ``sluice show
--output`` reads), so the output is still there after a restart, in history and in replay.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.widgets import RichLog

from sluice.engine.app.spools import NoOutput, output_tail
from sluice.tui.model import ConsoleModel
from sluice.tui.themes import Palette
from sluice.tui.views import TargetView

SHOWN_LINES = 1000
#: The event stream's mark where it left an apply's output out (engine.rollout.output_cap).
ELIDED = "bytes of output elided here"
RUNNING = ("applying", "rolling_back")


class RolloutLog(RichLog):
    """Appends only what is new; switching source redraws from the model's buffers."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, max_lines=SHOWN_LINES, wrap=False, markup=False, auto_scroll=True)
        self.source: str | None = None  # a target name, or None for the event log
        self._placeholder = False
        self._shown = 0  # of the source target's lines ever written, how many are on screen
        self.border_title = "events"

    def show(self, model: ConsoleModel, target: str | None, palette: Palette) -> None:
        """Show ``target``'s output (or the event log when None) from the start of its buffer."""
        self.source = target
        self._placeholder = False
        self._shown = 0
        self.clear()
        if target is None:
            self.border_title = "events"
            self.append_events(model.event_log, palette)
            self._shown = model.events_written
        else:
            self.border_title = f"output · {target}"
            view = model.targets.get(target)
            spooled = spooled_output(model, view) if view is not None else None
            if view is not None and spooled:
                self.write(
                    Text("from its spool: stdout, then stderr", style=palette.style("log-muted"))
                )
                self.append_output(spooled, palette)
                self._shown = view.written
            elif view is not None:
                self.append_output(view.output, palette)
                self._shown = view.written
            if view is None or not (view.output or spooled):
                self.write(Text("no output yet", style=palette.style("log-muted")))
                self._placeholder = True

    def append_new(self, model: ConsoleModel, palette: Palette) -> None:
        """Append what the source (a target's output, or the event log) gained since we looked.

        Counting lines ever written, rather than taking the model's list of new lines, keeps
        the log right however a repaint interleaves with a source switch.
        """
        if self.source is None:
            new = model.events_written - self._shown
            if new > 0:
                lines = list(model.event_log)
                self.append_events(lines[-new:] if new < len(lines) else lines, palette)
                self._shown = model.events_written
            return
        view = model.targets.get(self.source)
        if view is None:
            return
        new = view.written - self._shown
        if new <= 0:
            return
        if self._placeholder:
            self.clear()
            self._placeholder = False
        output = list(view.output)
        self.append_output(output[-new:] if new < len(output) else output, palette)
        self._shown = view.written

    def append_events(self, lines: Iterable[str], palette: Palette) -> None:
        for line in lines:
            style = None
            if "✗" in line or "FAILED" in line or "■ halted" in line:
                style = palette.style("log-stderr")
            elif line.startswith("!") or " ! " in line:
                style = palette.style("gate-waiting")
            self.write(Text(line, style=style or ""))

    def append_output(self, lines: Iterable[tuple[str, str]], palette: Palette) -> None:
        for stream, line in lines:
            if stream == "stderr":
                self.write(Text(line, style=palette.style("log-stderr")))
            elif stream == "meta":
                self.write(Text(line, style=palette.style("log-muted")))
            else:
                self.write(Text(line))


def spooled_output(model: ConsoleModel, view: TargetView) -> list[tuple[str, str]] | None:
    """The spool's tail of ``view``'s last apply when the events do not hold all of its output
    (and it is not running: then the events are the live stream); else None."""
    if model.rollout_id is None or view.status in RUNNING:
        return None
    lines = [line for stream, line in view.output if stream != "meta"]
    complete = (
        lines and view.written <= len(view.output) and not any(ELIDED in text for text in lines)
    )
    if complete:
        return None
    try:
        return output_tail(model.estate, model.rollout_id, view.name, SHOWN_LINES)
    except (NoOutput, OSError):
        return None
