"""Screens the console shows again and again (the estate matrix, the target detail) restyle
only when something that styles them changed since they were last shown.

Textual restyles every widget of a screen each time it is pushed (``ScreenResume`` with
``refresh_styles``), whether or not anything changed since it was last on screen; restyled,
every widget is drawn anew too (its cached lines dropped with its styles). At 1,000 targets
with a rollout streaming that costs tens of milliseconds per ``m`` or ``enter``. Between two
showings of one screen only a new theme (Textual counts those: ``App._css_update_count``, bumped
by every theme or CSS change; and the CSS another screen class brings the first time it is
opened) or a new terminal size (the breakpoint classes) changes how its widgets are styled —
anything else (a class added, a widget shown or hidden, focus) restyles the widgets it touches
at once, suspended or not. So a screen shown again with neither changed keeps its styles, as
Textual itself does when a screen is popped back to.
"""

from __future__ import annotations

from typing import Any

from textual import events
from textual.screen import Screen


class Reshown:
    """Mixin for a :class:`~textual.screen.Screen` that is pushed again and again.

    Call :meth:`keep_styles` first thing in the screen's ``on_screen_resume`` (it runs before
    Textual's own handler, which restyles).
    """

    _styled_for: tuple[Any, ...] | None = None
    #: times a resume kept the styles (tests read it)
    restyles_skipped = 0

    def keep_styles(self, event: events.ScreenResume) -> None:
        """Skip the restyle of ``event`` when neither the CSS nor the size changed since the
        last time this screen was styled."""
        assert isinstance(self, Screen)
        app = self.app
        # (the CSS sources too: a screen class opened for the first time adds its own)
        sources = len(getattr(app.stylesheet, "source", ()))
        styled_for = (getattr(app, "_css_update_count", None), sources, app.size)
        if event.refresh_styles and styled_for == self._styled_for and styled_for[0] is not None:
            event.refresh_styles = False
            self.restyles_skipped += 1
        self._styled_for = styled_for
