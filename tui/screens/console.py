"""The console screen: the live rollout view and every operator command, each a Binding with an id."""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from sluice.engine.model.plan import Plan
from sluice.engine.model.template import TemplateError, render
from sluice.engine.rollout.events import EventBus
from sluice.engine.rollout.orchestrator import Rollout, describe_failure
from sluice.engine.rollout.state import CommandResult
from sluice.engine.store.follow import Follower
from sluice.tui.driver import RolloutDriver
from sluice.tui.model import ConsoleModel
from sluice.tui.screens.covered import Covered
from sluice.tui.screens.modals import ConfirmScreen, ReasonScreen
from sluice.tui.screens.new_rollout import NewRolloutScreen
from sluice.tui.watching import follow_history
from sluice.tui.widgets.header import RolloutHeader
from sluice.tui.widgets.keys_footer import KeysFooter
from sluice.tui.widgets.rollout_view import RolloutView
from sluice.tui.widgets.stop_line import StopLine

#: How often a watching (read-only) console reads the driving console's progress from history.
WATCH_SECONDS = 1.0
#: How often every console looks for a freeze of its estate (``sluice freeze``).
FREEZE_SECONDS = 1.0
#: How often the stop line counts down (applies being stopped: signal sent, SIGKILL to come).
STOP_LINE_SECONDS = 1.0


class ConsoleScreen(Covered, Screen[None]):
    """Drives one rollout at a time through a :class:`RolloutDriver`."""

    BINDINGS = [
        Binding("n", "new_rollout", "New", id="rollout.new"),
        Binding("space", "pause", "Pause", id="rollout.pause"),
        Binding("a", "advance", "Advance", id="rollout.advance"),
        Binding("t", "retry", "Retry", id="rollout.retry"),
        Binding("r", "rollback_wave", "Rollback", id="rollout.rollback_wave"),
        Binding("R", "rollback_target", "Rb target", id="rollout.rollback_target"),
        Binding("x", "abort", "Abort", id="rollout.abort"),
        Binding("b", "bypass", "Bypass", id="rollout.bypass"),
        Binding("d", "dashboard", "Dash", id="target.dashboard"),
        Binding("v", "next_module", "Module", id="tree.module"),
    ]

    def __init__(self, driver: RolloutDriver, model: ConsoleModel, *, mode: str = "live"):
        super().__init__(id="console")
        self.driver = driver
        self.model = model
        self.mode = mode
        #: A watching console's reader of the driver's progress (None: this console drives).
        self.follower: Follower | None = None

    def compose(self) -> ComposeResult:
        yield RolloutView(self.model, mode=self.mode, id="view")
        yield StopLine(id="stopping")
        yield KeysFooter()

    @property
    def view(self) -> RolloutView:
        return self.query_one(RolloutView)

    def on_mount(self) -> None:
        if self.driver.read_only:
            self._watch()
        self._show_freeze()
        self.set_interval(FREEZE_SECONDS, self._show_freeze)
        self.set_interval(STOP_LINE_SECONDS, self._show_stops)

    def on_screen_resume(self) -> None:
        for view in self.query(RolloutView):  # back from the matrix or a detail
            view.shown_again()

    def _show_stops(self) -> None:
        rollout = self.driver.rollout
        active = rollout is not None and rollout.outcome is None
        self.query_one(StopLine).show(rollout.jobs.stops if active and rollout else None)

    def _show_freeze(self) -> None:
        """Every console of the estate shows its freeze, whoever drives (history is shared)."""
        try:
            frozen = self.driver.frozen() or ""
        except Exception:  # a busy history: the next poll says it
            return
        self.view.query_one(RolloutHeader).frozen = frozen

    @work(group="watch", exclusive=True)
    async def _watch(self) -> None:
        """Another console drives the estate: follow its rollout through the shared history."""
        bus = EventBus()
        self.view.follow(bus)
        # Where the estate says (a file, or the PostgreSQL URL with its password), read-only.
        self.follower, ended = follow_history(self.driver.estate.history, bus, WATCH_SECONDS)
        try:
            await ended
        finally:
            self.follower.stop()

    # ------------------------------------------------------------------ starting

    def start(self, plan: Plan, extra: dict[str, Any] | None = None) -> Rollout | None:
        """Start ``plan`` now (the caller has confirmed it); ``extra`` is recorded with it."""
        try:
            rollout = self.driver.start(plan, extra)
        except PermissionError as exc:
            self.notify(str(exc), title="refused", severity="warning", markup=False)
            return None
        self._run(rollout)
        return rollout

    def resume(self, record) -> Rollout | None:  # type: ignore[no-untyped-def]
        """Resume a recorded rollout: its history first, then the live events."""
        rollout = self.driver.resume(record)
        self.model.apply_all(self.driver.recorded_events(record.id))
        self._run(rollout)
        return rollout

    def _run(self, rollout: Rollout) -> None:
        # Subscribe before the rollout's first event can be emitted.
        self.view.follow(rollout.bus, resync=lambda: self.model.sync(rollout.targets))
        self._drive()

    @work(group="rollout", exclusive=True, exit_on_error=False)
    async def _drive(self) -> None:
        await self.driver.drive()  # an engine failure ends the rollout "crashed", on the stream

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A failure around the rollout (the session, the recorder) is shown, never swallowed:
        the header, a notification and the log say it, with where its traceback went."""
        error = event.worker.error
        if event.state != WorkerState.ERROR or error is None:
            return
        where = self.driver.session.write_crash_log(error)
        message = describe_failure(error) + (f"; traceback in {where}" if where else "")
        self.model.crashed(f"the console's {event.worker.name} task failed: {message}")
        self.view.schedule()
        self.notify(message, title="sluice failed", severity="error", timeout=60, markup=False)

    # ------------------------------------------------------------------ commands

    def _report(self, result: CommandResult) -> None:
        if result.ok:
            self.notify(result.message, timeout=4, markup=False)
        else:
            self.notify(
                result.message, title="refused", severity="warning", timeout=6, markup=False
            )

    def action_new_rollout(self) -> None:
        warning = ""
        rollout = self.driver.rollout
        if self.driver.read_only:
            self._report(CommandResult(False, self.driver.read_only))
            return
        if rollout is not None and self.driver.active():
            if rollout.state not in (
                "halted", "rolled_back", "inconclusive", "awaiting_approval", "awaiting_entry",
                "held",
            ):  # fmt: skip
                self._report(
                    CommandResult(
                        False,
                        f"rollout #{rollout.rollout_id} is {rollout.state}: "
                        "let it finish, or abort it (x), before starting another",
                    )
                )
                return
            warning = (
                f"Rollout #{rollout.rollout_id} ({rollout.plan.module} → {rollout.plan.version}) "
                f"is {rollout.state.replace('_', ' ')}: starting this one stops it (recorded as superseded)."
            )
        self.app.push_screen(
            NewRolloutScreen(
                self.driver.estate,
                self.driver.plan,
                self.driver.current_versions,
                self.driver.last_version,
                time_scale=self.driver.clock.scale,
                warning=warning,
                now=self.driver.clock.now,
            ),
            self._new_rollout_chosen,
        )

    def _new_rollout_chosen(self, plan: Plan | None) -> None:
        if plan is not None:
            self._start_chosen(plan)

    @work(group="start", exclusive=True)
    async def _start_chosen(self, plan: Plan) -> None:
        if self.driver.active():
            await self.driver.supersede(f"{plan.module} {plan.version}")
            plan = self.driver.plan(plan.module, plan.version)  # the ledger moved
        self.start(plan)

    def action_pause(self) -> None:
        self._report(self.driver.pause_or_resume())

    def action_advance(self) -> None:
        review = getattr(self.driver.rollout, "review", None)
        if review is not None and self.driver.active():  # a plan review waits: show it first
            self._review_plans(review)
            return
        self._report(self.driver.command(Rollout.advance))

    def _review_plans(self, review) -> None:  # type: ignore[no-untyped-def]
        from sluice.tui.screens.plan_review import PlanReviewScreen

        def answered(approved: bool | None) -> None:
            if approved:
                self._report(self.driver.command(Rollout.advance))

        screen = PlanReviewScreen(review.wave, review.groups, review.errors)
        self.app.push_screen(screen, answered)

    def action_retry(self) -> None:
        target = self.view.selected_target()
        if target is None:
            self._report(CommandResult(False, "select a failed target in the tree to retry it"))
            return
        self._report(self.driver.command(lambda r: r.retry(target)))

    def action_rollback_wave(self) -> None:
        wave = self.view.selected_wave()
        if wave is None or not self.driver.active():
            self._report(self.driver.command(lambda r: r.rollback_wave(wave or 0)))
            return
        view = self.model.waves.get(wave)
        name = f"wave {wave} ({view.name})" if view else f"wave {wave}"
        self._confirm_rollback(wave, name)

    @work(group="rollback-preview", exclusive=True)
    async def _confirm_rollback(self, wave: int, name: str) -> None:
        """Confirm a wave's rollback; for tofu targets, with the plans of the rollback first."""
        from sluice.tui.screens.plan_review import rollback_preview

        rollout = self.driver.rollout
        changed = [
            (t.name, t.version, t.from_version)
            for t in (rollout.targets.values() if rollout else ())
            if t.wave == wave and t.version != t.from_version
        ]
        if changed:
            self.notify(f"planning the rollback of {name}…", timeout=3)
        preview = await rollback_preview(self.driver.estate, self.model.module, changed)
        self._confirm(
            f"Roll back {name}?",
            f"Every target of {name} that changed is re-applied with the version it had "
            "before this rollout." + (f"\n\n{preview}" if preview else ""),
            "Roll back",
            lambda: self.driver.command(
                lambda r: r.rollback_wave(wave, reason="operator rollback")
            ),
        )

    def action_rollback_target(self) -> None:
        target = self.view.selected_target()
        if target is None or not self.driver.active():
            self._report(
                self.driver.command(lambda r: r.rollback_target(target or ""))
                if target or not self.driver.active()
                else CommandResult(False, "select a target in the tree to roll it back")
            )
            return
        view = self.model.targets.get(target)
        version = view.from_version if view else "its previous version"
        self._confirm(
            f"Roll back {target}?",
            f"{target} is re-applied with {version}, the version it had before this rollout.",
            "Roll back",
            lambda: self.driver.command(
                lambda r: r.rollback_target(target, reason="operator rollback")
            ),
        )

    def action_abort(self) -> None:
        if not self.driver.active():
            self._report(self.driver.command(Rollout.abort))
            return
        rollout = self.driver.rollout
        if rollout is not None and rollout.aborting and rollout.jobs.stops.now():
            # A second abort while applies wait out their stop grace: kill them now?
            self._show_stops()
            self._confirm(
                "Kill the stopping applies now?",
                f"{rollout.jobs.stops.line(most=5)}.\n\nSIGKILL ends them at once, without "
                "their cleanup: what they were writing may be left half-done and locks held. "
                "Waiting out the grace is the safe choice.",
                "SIGKILL now",
                lambda: self.driver.command(lambda r: r.abort(reason="SIGKILL at once")),
            )
            return
        self._confirm(
            "Abort the rollout?",
            "In-flight applies are stopped and nothing new starts. Targets already changed stay "
            "as they are (roll them back afterwards if needed).",
            "Abort",
            lambda: self.driver.command(lambda r: r.abort(reason="aborted from the console")),
        )

    def action_bypass(self) -> None:
        if not self.driver.active():
            self._report(self.driver.command(lambda r: r.bypass("-")))
            return
        wave = self.model.current_wave

        def chosen(reason: str | None) -> None:
            if reason is not None:
                self._report(self.driver.command(lambda r: r.bypass(reason)))

        self.app.push_screen(
            ReasonScreen(
                f"Bypass the gate of wave {wave}?",
                "Bypassing skips the gate (or the halt) as if it had passed. It is an emergency "
                "action: say why.",
            ),
            chosen,
        )

    def action_dashboard(self) -> None:
        target = self.view.selected_target()
        if target is None:
            self._report(CommandResult(False, "select a target in the tree to see its dashboard"))
            return
        spec = self.driver.estate.targets.get(target)
        if spec is None or not spec.dashboard:
            self._report(CommandResult(False, f"{target} has no dashboard in the estate file"))
            return
        view = self.model.targets.get(target)
        ctx = self.driver.estate.context(
            target,
            self.model.module,
            view.version if view else "",
            view.from_version if view else "",
        )
        try:
            url = render(spec.dashboard, ctx).display
        except TemplateError as exc:
            self._report(CommandResult(False, f"dashboard link of {target}: {exc}"))
            return
        self.app.copy_to_clipboard(url)
        self.notify(
            f"{url}\n(copied to the clipboard)",
            title=f"dashboard · {target}",
            timeout=12,
            markup=False,
        )

    def action_next_module(self) -> None:
        """Show the next module's versions in the tree (no rollout is running)."""
        if self.driver.active() or self.model.running():
            self._report(
                CommandResult(False, f"the tree shows the running rollout's {self.model.module}")
            )
            return
        modules = list(self.driver.estate.modules)
        if not modules:
            return
        at = modules.index(self.model.module) if self.model.module in modules else -1
        module = modules[(at + 1) % len(modules)]
        self.model.reset_idle(self.driver.current_versions(module), module)
        self.call_next(self.view.repaint)
        self.notify(f"the estate tree shows {module}", timeout=3, markup=False)

    def _confirm(self, title: str, body: str, verb: str, command) -> None:  # type: ignore[no-untyped-def]
        def answered(yes: bool | None) -> None:
            if yes:
                self._report(command())

        self.app.push_screen(ConfirmScreen(title, body, confirm=verb), answered)
