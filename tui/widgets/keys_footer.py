"""The footer every sluice screen shows: Textual's (compact), rebuilt only when its keys change.

Textual's :class:`~textual.widgets.Footer` recomposes — removes and mounts a widget per key, each
styled anew — every time its screen publishes ``bindings_updated``: on every focus change and
every screen switch, several times per switch, whether or not the keys changed. With a rollout
streaming that cost ~30 ms a time, most of what ``m`` and ``enter`` took to show their screen.
This one keeps what it shows (the user's keys, from the keymap, as Textual's does) and rebuilds
only when the keys, their descriptions or their enabled state differ; several notices before one
refresh are one rebuild.
"""

from __future__ import annotations

from typing import Any

from textual.screen import Screen
from textual.widgets import Footer


class KeysFooter(Footer):
    """A compact :class:`~textual.widgets.Footer` that recomposes only when its keys change."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, compact=True)
        #: what the keys looked like when last composed (None: not composed yet)
        self.shown: tuple[Any, ...] | None = None
        #: times the keys were rebuilt (tests read it)
        self.rebuilds = 0
        self._pending = False

    @property
    def pending(self) -> bool:
        """A rebuild is asked for and not yet done."""
        return self._pending

    def keys(self) -> tuple[Any, ...]:
        """Everything :meth:`Footer.compose` draws, as comparable data."""
        app = self.app
        active = self.screen.active_bindings
        palette = active.get(app.COMMAND_PALETTE_BINDING) if self.show_command_palette else None
        shown = tuple(
            (b.key, app.get_key_display(b), b.description, b.action, enabled, tip, b.group)
            for _node, b, enabled, tip in active.values()
            if b.show
        )
        extra = None if palette is None else (palette[1].key, palette[2], palette[3])
        return (shown, extra, app.ENABLE_COMMAND_PALETTE)

    def bindings_changed(self, screen: Screen[Any]) -> None:
        self._bindings_ready = True
        if not screen.app.app_focus or self._pending:
            return
        if self.is_attached and screen is self.screen:
            self._pending = True
            self.call_after_refresh(self._rebuild)

    async def _rebuild(self) -> None:
        self._pending = False
        if not self.is_attached:
            return
        keys = self.keys()
        if keys == self.shown:
            return
        self.shown = keys
        self.rebuilds += 1
        await self.recompose()
