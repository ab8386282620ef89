"""``?``: every key and what it does, as bound right now (remapped keys included)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Label, Static

from sluice.tui.keys import KeyInfo, active_keys, class_keys


def _table(title: str, keys: list[KeyInfo]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False, box=None, expand=True)
    table.add_column("key", style="bold", width=12, no_wrap=True)
    table.add_column("what it does", ratio=1)
    table.add_column("binding id", style="dim", no_wrap=True)
    for key in keys:
        table.add_row(key.key, key.description, key.id)
    return table


class HelpScreen(ModalScreen[None]):
    """Lists the keys of the screen it was opened from, then those of the other screens."""

    BINDINGS = [Binding("escape,question_mark,q", "close", "Close", id="help.close")]

    def __init__(
        self,
        source: Screen[object],
        others: list[tuple[str, list[Binding | tuple[str, str] | tuple[str, str, str]]]],
    ):
        super().__init__(classes="modal")
        self.source = source
        self.others = others
        self.shown: list[KeyInfo] = []

    def compose(self) -> ComposeResult:
        here = sorted(active_keys(self.app, self.source), key=lambda k: _order(k.id))
        self.shown = list(here)
        with Vertical(classes="dialog wide", id="help-dialog") as dialog:
            dialog.border_title = "Keys"
            with VerticalScroll():
                yield Static(_table("On this screen", here), classes="help-table")
                for title, bindings in self.others:
                    keys = list(class_keys(self.app, bindings))
                    self.shown += keys
                    if keys:
                        yield Static(_table(title, keys), classes="help-table")
                yield Static(
                    Text(
                        "Every action is also in the command palette (ctrl+p), with the themes. "
                        "Keys can be remapped by binding id in ~/.config/sluice/keys.toml, "
                        'e.g. "rollout.pause" = "p" (ids in the last column).',
                        style="dim",
                    )
                )
            yield Label("esc closes", classes="dialog-hint")

    def action_close(self) -> None:
        self.dismiss(None)


def _order(binding_id: str) -> tuple[int, str]:
    prefixes = ("rollout.", "target.", "tree.", "replay.", "history.", "app.")
    rank = next((i for i, p in enumerate(prefixes) if binding_id.startswith(p)), len(prefixes))
    return rank, ""
