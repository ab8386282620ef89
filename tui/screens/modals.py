"""Small modals: confirm a destructive command, ask for a reason, show a text."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


class ConfirmScreen(ModalScreen[bool]):
    """Asks before a destructive command; dismisses with True only on an explicit yes."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(self, title: str, body: str, *, confirm: str = "Yes", danger: bool = True):
        super().__init__(classes="modal")
        self.title_text = title
        self.body = body
        self.confirm = confirm
        self.danger = danger

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="confirm-dialog") as dialog:
            dialog.border_title = self.title_text
            yield Static(self.body, classes="dialog-body")
            with Horizontal(classes="dialog-buttons"):
                yield Button(
                    f"{self.confirm} (y)",
                    variant="error" if self.danger else "primary",
                    id="yes",
                )
                yield Button("Cancel (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class ReasonScreen(ModalScreen[str | None]):
    """Asks for a reason (recorded in history); refuses to submit an empty one."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="reason.cancel")]

    def __init__(self, title: str, body: str, *, confirm: str = "Bypass"):
        super().__init__(classes="modal")
        self.title_text = title
        self.body = body
        self.confirm = confirm

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="reason-dialog") as dialog:
            dialog.border_title = self.title_text
            yield Static(self.body, classes="dialog-body")
            yield Input(placeholder="why (required, recorded with your name)", id="reason")
            yield Label("", id="reason-error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.confirm} (enter)", variant="error", id="submit")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#reason", Input).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _submit(self) -> None:
        reason = self.query_one("#reason", Input).value.strip()
        if not reason:
            self.query_one("#reason-error", Label).update(
                "A reason is required: it is recorded in the history with your name."
            )
            self.query_one("#reason", Input).focus()
            return
        self.dismiss(reason)

    @on(Input.Submitted, "#reason")
    def _entered(self) -> None:
        self._submit()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "submit":
            self._submit()
        else:
            self.dismiss(None)


class TextScreen(ModalScreen[None]):
    """A scrollable text (a rollout's record)."""

    BINDINGS = [Binding("escape,q,enter", "close", "Close", id="text.close")]

    def __init__(self, title: str, lines: list[str]):
        super().__init__(classes="modal")
        self.title_text = title
        self.lines = lines

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="text-dialog") as dialog:
            dialog.border_title = self.title_text
            with VerticalScroll():
                yield Static("\n".join(self.lines), markup=False, classes="dialog-text")
            yield Label("esc closes", classes="dialog-hint")

    def action_close(self) -> None:
        self.dismiss(None)
