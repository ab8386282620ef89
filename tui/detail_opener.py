"""How the console opens a target's detail: one screen, reused, read ahead for the selected target.

``enter`` on a target in the console's tree or the replay's shows it in one installed
:class:`~sluice.tui.screens.target_detail.TargetDetailScreen` (showing another target builds no
widgets). While the tree's cursor rests on a target its detail is read ahead
(:mod:`sluice.tui.detail_ahead`) once it has rested a moment (holding ``down`` reads nothing);
without a fresh read ahead, ``enter`` reads it then and shows the screen when the read returns
(tens of milliseconds), so the detail appears once, whole.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from textual.app import App
from textual.screen import Screen
from textual.timer import Timer

from sluice.engine.model.estate import Estate
from sluice.engine.store.history import History
from sluice.tui.model import ConsoleModel
from sluice.tui.screens.target_detail import TargetDetailScreen
from sluice.tui.widgets.rollout_view import RolloutView

#: How long the cursor rests on a target before its detail is read ahead.
REST_SECONDS = 0.15
#: How long ``enter`` waits for history's part before showing the detail without it.
WAIT_SECONDS = 0.15


class DetailOpener:
    """The app's target detail: :meth:`open` on ``enter``, :meth:`selected` as the cursor moves.

    Args:
        app: the console.
        estate, history: what the detail shows.
        model: the console's model (is a rollout running; its newest output lines).
    """

    def __init__(self, app: App[Any], estate: Estate, history: History, model: ConsoleModel):
        self.app = app
        self.estate = estate
        self.history = history
        self.model = model
        self._screen: TargetDetailScreen | None = None
        self._rest: Timer | None = None

    def shared(self, target: str) -> TargetDetailScreen:
        """The one detail screen (made, and installed, for the first target asked for)."""
        if self._screen is None:
            self._screen = TargetDetailScreen(self.estate, self.history, target)
            self.app.install_screen(self._screen, name="detail")
        return self._screen

    def open(self, view: RolloutView, target: str) -> None:
        """Show ``target``'s detail (``enter`` on it in ``view``)."""
        options = self.live_options(target) if view.mode != "replay" else {}
        self.open_from(view.screen, target, view.model.rollout_id, options)

    def open_from(
        self,
        origin: Screen[Any],
        target: str,
        rollout_id: int | None,
        options: dict[str, object],
    ) -> None:
        """Show ``target``'s detail over ``origin`` (the console, the replay, the matrix)."""
        screen = self.shared(target)
        if screen in self.app.screen_stack:  # a screen is pushed once: a new one above it
            screen = TargetDetailScreen(self.estate, self.history, target)
        self.app.run_worker(
            self._open(origin, screen, target, rollout_id, options),
            group="detail-open",
            exclusive=True,
            exit_on_error=False,
        )

    async def _open(
        self,
        origin: Screen[Any],
        screen: TargetDetailScreen,
        target: str,
        rollout_id: int | None,
        options: dict[str, object],
    ) -> None:
        """Push the detail with history's part: read ahead, or read now if that takes no longer
        than ``WAIT_SECONDS`` — one frame with everything, rather than the estate file's part
        first and history's a frame later. A slower read fills the screen in when it returns."""
        detail = screen.ahead.fresh(target, rollout_id, live=bool(options.get("live")))
        if detail is None:
            # Failed (a busy history) or slow: the screen reads again, and says what failed.
            with contextlib.suppress(Exception):
                detail = await asyncio.wait_for(screen.ahead.read(target, rollout_id), WAIT_SECONDS)
        if origin is not self.app.screen:
            return  # the operator went elsewhere meanwhile
        screen.show(target, rollout_id=rollout_id, detail=detail, **options)  # type: ignore[arg-type]
        if screen.is_mounted:  # shown before: painted now, drawn in one frame when pushed
            await screen.paint_shown()
            if origin is not self.app.screen:
                return
        self.app.push_screen(screen)

    def live_options(self, target: str) -> dict[str, object]:
        """The detail's live part while a rollout runs: the console's newest output lines."""
        model = self.model
        view = model.targets.get(target)
        if not model.running() or view is None or not view.output:
            return {"live": model.running()}
        return {"live": True, "live_lines": lambda: [line for _, line in view.output]}

    def selected(self, view: RolloutView, target: str | None) -> None:
        """The cursor of ``view``'s tree moved to ``target`` (None: not a target)."""
        if self._rest is not None:
            self._rest.stop()
            self._rest = None
        if target is not None:
            self._rest = self.app.set_timer(REST_SECONDS, lambda: self._read_ahead(view, target))

    def _read_ahead(self, view: RolloutView, target: str) -> None:
        if view.is_attached and view.selected_target() == target:
            live = view.mode != "replay" and self.model.running()
            self.shared(target).ahead.start(target, view.model.rollout_id, live=live)

    def close(self) -> None:
        """The app is closing: a detail screen never shown has its reader to close."""
        if self._screen is not None and not self._screen.is_mounted:
            self._screen.reader.close()
