"""The command palette: every bound action of the current screen, and the themes, by name.

Commands come from the screen's active bindings (those with ids), so a new key binding is in the
palette automatically and palette and key run the very same action.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from textual.command import DiscoveryHit, Hit, Hits, Provider

from sluice.tui.keys import TITLES, active_keys


class SluiceCommands(Provider):
    """Operator commands, screens and themes."""

    def _commands(self) -> list[tuple[str, str, Callable[[], Any]]]:
        commands: list[tuple[str, str, Callable[[], Any]]] = []
        for key in active_keys(self.app, self.screen):
            if key.node is None or key.id.startswith(
                ("confirm.", "reason.", "help.", "tree.clear")
            ):
                continue
            title = TITLES.get(key.id, key.description)
            commands.append(
                (
                    f"{title}  ({key.key})",
                    key.description,
                    partial(key.node.run_action, key.action),  # type: ignore[attr-defined]
                )
            )
        for name in sorted(self.app.available_themes):
            if name.startswith("sluice-"):
                commands.append(
                    (
                        f"Theme: {name.removeprefix('sluice-')}",
                        f"switch to the {name} theme",
                        partial(setattr, self.app, "theme", name),
                    )
                )
        return commands

    async def discover(self) -> Hits:
        for title, help_text, callback in self._commands():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._commands():
            score = max(matcher.match(title), matcher.match(help_text) * 0.8)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, text=title, help=help_text)
