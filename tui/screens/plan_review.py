"""Plan review: a ``review = "plans"`` wave's plans, grouped, before they may be applied.

Groups are listed largest first; an outlier group (it destroys or replaces something, or differs
from the rest of its channel) is drawn in the theme's danger colour. The selected group's targets
and resource changes show beside the list. ``a`` approves exactly these plan files; when any of
them destroys or replaces a resource, a second confirmation is asked first. ``escape`` closes
the screen without approving (the wave keeps waiting).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from sluice.engine.executors.tofu_plan import DESTRUCTIVE, change_lines
from sluice.engine.model.estate import Estate
from sluice.tui.screens.modals import ConfirmScreen
from sluice.tui.widgets.keys_footer import KeysFooter


class PlanReviewScreen(ModalScreen[bool]):
    """Dismisses with True once the operator approved (and, for destroys, confirmed)."""

    CSS_PATH = "plan_review.tcss"
    BINDINGS = [
        Binding("a", "approve", "Approve plans", id="review.approve"),
        Binding("escape", "close", "Close", id="review.close"),
    ]

    def __init__(self, wave: int, groups: Sequence[Mapping[str, Any]], errors: Mapping[str, str]):
        super().__init__(classes="modal")
        self.wave = wave
        self.groups = list(groups)
        self.errors = dict(errors)

    @property
    def destroys(self) -> bool:
        return any(g.get("destroys") for g in self.groups)

    def compose(self) -> ComposeResult:
        count = sum(len(g["targets"]) for g in self.groups)
        with Vertical(classes="dialog wide", id="review-dialog") as dialog:
            dialog.border_title = (
                f"Plans of wave {self.wave}: {count} target(s), {len(self.groups)} group(s)"
            )
            with Horizontal(id="review-panes"):
                yield OptionList(*self._options(), id="review-groups")
                yield Static(id="review-changes")
            yield Static(self._hint(), id="review-hint")
        yield KeysFooter()

    def _danger(self) -> str:
        return self.app.get_css_variables().get("error", "red")

    def _options(self) -> list[Option]:
        options = []
        for number, group in enumerate(self.groups, 1):
            label = Text(f"{number}. {len(group['targets'])} target(s) · {group['summary']}")
            if group["outlier"]:
                label = Text(f"⚠ {label.plain}", style=f"bold {self._danger()}")
            options.append(Option(label, id=f"group-{number}"))
        return options

    def _hint(self) -> str:
        errors = "".join(f"\n✗ {t}: {reason}" for t, reason in sorted(self.errors.items()))
        verb = (
            "approve (you will be asked again: some plans destroy or replace)"
            if self.destroys
            else "approve"
        )
        return f"a {verb} · escape: close, the wave keeps waiting{errors}"

    def on_mount(self) -> None:
        groups = self.query_one("#review-groups", OptionList)
        groups.focus()
        if self.groups:
            groups.highlighted = 0
            self._show(0)

    @on(OptionList.OptionHighlighted)
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self._show(event.option_index)

    def _show(self, index: int) -> None:
        group = self.groups[index]
        text = Text()
        if group["outlier"]:
            text.append(
                f"OUTLIER: {'; '.join(group['outlier_reasons'])}\n", style=f"bold {self._danger()}"
            )
        text.append(f"targets: {', '.join(sorted(group['targets']))}\n", style="bold")
        text.append(f"plan {group['hash'][:12]}\n\n")
        for resource, line in zip(_rows(group), change_lines(group), strict=True):
            danger = resource in DESTRUCTIVE
            text.append(line + "\n", style=self._danger() if danger else "")
        self.query_one("#review-changes", Static).update(text)

    def action_close(self) -> None:
        self.dismiss(False)

    def action_approve(self) -> None:
        if not self.destroys:
            self.dismiss(True)
            return
        doomed = sorted(t for g in self.groups if g.get("destroys") for t in g["targets"])

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.dismiss(True)

        self.app.push_screen(
            ConfirmScreen(
                "Approve plans that destroy or replace resources?",
                f"The plans of {', '.join(doomed)} destroy or replace resources. Approve them?",
                confirm="Approve",
            ),
            confirmed,
        )


def _rows(group: Mapping[str, Any]) -> list[str]:
    """The action of each line :func:`change_lines` makes, in its order."""
    return [r["action"] for r in group.get("resources", ())] + [
        o["action"] for o in group.get("outputs", ())
    ]


async def rollback_preview(
    estate: Estate, module: str, targets: Sequence[tuple[str, str, str]]
) -> str | None:
    """What rolling ``targets`` (name, version now, version to go back to) back would change.

    None when none of them has a tofu executor (nothing to preview); otherwise the groups of the
    rollback plans, those that destroy or replace first, for the rollback's confirmation.
    """
    from sluice.engine.app.iac import preview_targets
    from sluice.engine.executors.base import Job
    from sluice.engine.executors.tofu_plan import group_lines

    jobs = [
        Job(
            name,
            estate.targets[name].channel,
            module,
            back,
            now,
            "rollback",
            estate.targets[name].vars,
        )
        for name, now, back in targets
        if estate.executors[estate.targets[name].executor].kind == "tofu"
    ]
    if not jobs:
        return None
    preview = await preview_targets(estate, jobs)
    groups = sorted((g.to_dict() for g in preview.groups), key=lambda g: not g["destroys"])
    lines = [
        "Rolling back DESTROYS or REPLACES resources:"
        if preview.destroys
        else "The rollback plans:"
    ]
    for number, group in enumerate(groups, 1):
        lines += group_lines(number, group)
    lines += [f"✗ {t}: cannot plan: {reason}" for t, reason in sorted(preview.errors.items())]
    return "\n".join(lines)
