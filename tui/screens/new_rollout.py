"""The new-rollout modal: pick module and version, read the plan, confirm."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Label, Select, Static

from sluice.engine.model.estate import Estate
from sluice.engine.model.plan import PLAN_COLUMNS as COLUMNS
from sluice.engine.model.plan import (
    Plan,
    PlanError,
    approvals_note,
    plan_rows,
    window_waits,
    windows_note,
)
from sluice.engine.model.units import format_duration


def default_version(
    estate: Estate, module: str, current: dict[str, str], last: str | None = None
) -> str:
    """What one would roll next: the version after the module's last rollout (a halted 2.0.0
    suggests 2.0.1), or, with no rollout yet, after the version most targets run."""
    spec = estate.modules[module]
    versions = list(spec.versions)
    if last is None:
        running = Counter(current.get(t, spec.initial) for t in estate.targets)
        last = running.most_common(1)[0][0] if running else spec.initial
    if last in versions and versions.index(last) + 1 < len(versions):
        return versions[versions.index(last) + 1]
    return versions[-1]


class NewRolloutScreen(ModalScreen[Plan | None]):
    """Dismisses with the plan to start, or None."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="new.cancel"),
        Binding("s", "start", "Start", id="new.start"),
        Binding("m", "focus_module", "Module", id="new.module"),
        Binding("v", "focus_version", "Version", id="new.version"),
    ]

    def __init__(
        self,
        estate: Estate,
        planner: Callable[[str, str], Plan],
        current: Callable[[str], dict[str, str]],
        last_version: Callable[[str], str | None] = lambda module: None,
        *,
        time_scale: float = 1.0,
        warning: str = "",
        now: Callable[[], float] = time.time,
    ):
        super().__init__(classes="modal")
        self.estate = estate
        self.planner = planner
        self.current = current
        self.last_version = last_version
        self.time_scale = time_scale
        self.warning = warning
        self.now = now  # the change windows' "now" (the engine clock's, in tests)
        self.plan: Plan | None = None
        self.module = next(iter(estate.modules))

    def compose(self) -> ComposeResult:
        modules = [(name, name) for name in self.estate.modules]
        version = self._default(self.module)
        versions = [(v, v) for v in self.estate.modules[self.module].versions]
        with Vertical(classes="dialog wide", id="new-dialog") as dialog:
            dialog.border_title = "New rollout"
            with Horizontal(id="new-pickers"):
                yield Label("module", classes="picker-label")
                yield Select(modules, value=self.module, allow_blank=False, id="module")
                yield Label("version", classes="picker-label")
                yield Select(versions, value=version, allow_blank=False, id="version")
            yield Static("", id="plan-summary")
            yield DataTable(id="plan-table", cursor_type="row", zebra_stripes=True)
            yield Static(self.warning, id="plan-warning")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Start rollout (s)", variant="primary", id="start")
                yield Button("Cancel (esc)", id="cancel")
            yield Label("m module · v version · s start · esc cancel", classes="dialog-hint")

    def _default(self, module: str) -> str:
        return default_version(self.estate, module, self.current(module), self.last_version(module))

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for column in COLUMNS:
            table.add_column(column, key=column)
        self.query_one("#plan-warning").display = bool(self.warning)
        self._replan()
        # Focus the version, not Start: enter opens the picker, so a stray enter never starts
        # a rollout; `s` (or the button) does.
        self.query_one("#version", Select).focus()

    @on(Select.Changed, "#module")
    def _module_changed(self, event: Select.Changed) -> None:
        if event.value == self.module or event.value is Select.BLANK:
            return
        self.module = str(event.value)
        spec = self.estate.modules[self.module]
        version = self.query_one("#version", Select)
        version.set_options([(v, v) for v in spec.versions])
        version.value = self._default(self.module)
        self._replan()

    @on(Select.Changed, "#version")
    def _version_changed(self) -> None:
        self._replan()

    def _replan(self) -> None:
        version = self.query_one("#version", Select).value
        table = self.query_one(DataTable)
        table.clear()
        summary = self.query_one("#plan-summary", Static)
        try:
            self.plan = self.planner(self.module, str(version))
        except PlanError as exc:
            self.plan = None
            summary.update(Text(str(exc), style="bold"))
            return
        plan = self.plan
        waits = window_waits(plan, self.estate.windows, self.now())
        for row in plan_rows(plan, waits):
            table.add_row(*row)
        applies = sum(len(w.applies) for w in plan.waves)
        channels = len({w.channel.name for w in plan.waves})
        text = Text()
        text.append(f"{plan.module} → {plan.version}", style="bold")
        text.append(
            f": {channels} channels, {len(plan.waves)} waves, {len(plan.targets)} targets "
            f"({applies} to apply, {len(plan.targets) - applies} already there)\n"
        )
        text.append(f"estimated {format_duration(plan.expected_seconds + sum(waits.values()))}")
        if self.time_scale != 1.0:
            text.append(
                f" of estate time ≈ {format_duration(plan.expected_seconds * self.time_scale)} "
                f"at time scale {self.time_scale:g}"
            )
        if windows_note(plan, waits):
            text.append(f" ({windows_note(plan, waits)})")
        if approvals_note(plan):
            text.append(f"\n{approvals_note(plan)}")
        summary.update(text)

    def action_start(self) -> None:
        if self.plan is None:
            self.notify("no plan to start: pick a module and version", severity="warning")
            return
        if not any(w.applies for w in self.plan.waves):
            self.notify(
                f"every target already runs {self.plan.version}: nothing to roll out",
                severity="warning",
            )
            return
        self.dismiss(self.plan)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_focus_module(self) -> None:
        self.query_one("#module", Select).focus()

    def action_focus_version(self) -> None:
        self.query_one("#version", Select).focus()

    @on(Button.Pressed, "#start")
    def _start_pressed(self) -> None:
        self.action_start()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.dismiss(None)
