"""A screen hidden beneath an opaque one stops repainting the screen above it.

Textual keeps the screen directly beneath the top one "current" (it may show through a
transparent top screen) and, each time its widgets change, marks the same regions dirty on the
top screen *and* asks for a whole repaint of itself the frame after — which dirties the top
screen again, frame after frame. Under the estate matrix or a target's detail (opaque: nothing
beneath shows) a streaming console so made the top screen redraw ~20 regions' worth 60 times a
second for nothing, and a key pressed there waited for those frames (at 1,000 targets, tens of
milliseconds on ``enter``).

Covered, a :class:`Covered` screen still lays out and renders its changed widgets (so it is
up to date the moment it is uncovered: going back costs no catch-up beyond the one whole frame
Textual draws on resume), but forwards nothing upwards. Under a transparent screen (the help, the
modals) it forwards as before.
"""

from __future__ import annotations

from typing import Any

from textual.screen import Screen


def covered(screen: Screen[Any]) -> bool:
    """``screen`` is beneath the top screen and that one is opaque: nothing of it shows."""
    app = screen.app
    try:
        top = app.screen
    except Exception:  # no screen stack (closing)
        return False
    if top is screen or screen not in app.screen_stack:
        return False
    return top.styles.background.a == 1


class Covered:
    """Mixin for a :class:`~textual.screen.Screen` that streams changes while others cover it.

    Overrides Textual's private ``Screen._compositor_refresh`` (guarded: a Textual without the
    attributes it clears gets Textual's own behaviour).
    """

    #: frames not forwarded to the screen above (tests read it)
    frames_kept = 0

    def _compositor_refresh(self) -> None:
        assert isinstance(self, Screen)
        compositor = getattr(self, "_compositor", None)
        regions = getattr(compositor, "_dirty_regions", None)
        dirty = getattr(self, "_dirty_widgets", None)
        if regions is not None and dirty is not None and covered(self):
            # (Textual's resume repaints the whole screen: nothing dirty here is lost.)
            regions.clear()
            dirty.clear()
            self.frames_kept += 1
            return
        super()._compositor_refresh()  # type: ignore[misc]
