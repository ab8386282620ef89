"""The stop line: which applies are being stopped, with the signal sent and the SIGKILL to come,
counted down each second ("stopping eph-101: SIGINT sent 12 s ago, SIGKILL in 4m48s"). Hidden
while nothing is stopping."""

from __future__ import annotations

from textual.widgets import Static

from sluice.engine.rollout.stopping import Stops


class StopLine(Static):
    DEFAULT_CSS = """
    StopLine {
        height: 1;
        padding: 0 1;
        background: $error 30%;
        color: $text;
        text-style: bold;
        display: none;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)
        self.text = ""

    def show(self, stops: Stops | None) -> None:
        """Repaint from ``stops`` (None: no rollout)."""
        text = stops.line() if stops is not None else ""
        if text != self.text:
            self.text = text
            self.update(text)
        self.display = bool(text)
