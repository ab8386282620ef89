"""The sluice console: the App, and :func:`run_console`, the entry the CLI calls."""

from __future__ import annotations

import os
import sys

from textual import on
from textual.app import App
from textual.binding import Binding
from textual.screen import Screen

from sluice.engine.model.estate import Estate
from sluice.engine.model.plan import PlanError
from sluice.engine.rollout.state import ExitCode
from sluice.engine.store.history import HistoryError, HistoryNotWritable, RolloutRecord
from sluice.engine.support.clock import Clock
from sluice.tui.commands import SluiceCommands
from sluice.tui.detail_opener import DetailOpener
from sluice.tui.driver import LeaseHeld, ResumeError, RolloutDriver, open_session
from sluice.tui.keymap import UserKeys, default_path, read_keys
from sluice.tui.matrix_data import Running
from sluice.tui.model import ConsoleModel
from sluice.tui.screens.console import ConsoleScreen
from sluice.tui.screens.help import HelpScreen
from sluice.tui.screens.history import HistoryScreen
from sluice.tui.screens.matrix import MatrixScreen
from sluice.tui.screens.modals import ConfirmScreen
from sluice.tui.screens.replay import ReplayScreen
from sluice.tui.screens.target_detail import TargetDetailScreen
from sluice.tui.themes import ThemeError, load_themes, resolve_theme_name, variable_defaults
from sluice.tui.widgets.rollout_view import RolloutView


class SluiceApp(App[int]):
    """The console. Give it a driver (session + clock); everything else it builds.

    Args:
        driver: the session and engine clock rollouts are driven with.
        theme: a theme name (``sluice-light`` or ``light``); default ``sluice-dark``.
        start: ``(module, version)`` to start at once (``sluice run`` without ``--headless``).
        resume: a rollout id to resume at once; 0 for the newest resumable one.
        replay: a rollout id to replay instead of driving.
        speed: replay speed.
        offer_resume: on opening, offer to resume a rollout left running.
        keys: the user's keys file as read (:func:`sluice.tui.keymap.read_keys`): its keymap
            is applied; its problems are shown and the default keys kept.
    """

    CSS_PATH = ["sluice.tcss", "estate_screens.tcss"]
    TITLE = "sluice"
    COMMANDS = App.COMMANDS | {SluiceCommands}
    #: Below 100 columns the screen gets ``-narrow`` (estate_screens.tcss narrows the side panes).
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    BINDINGS = [
        Binding("question_mark", "help", "Help", id="app.help"),
        Binding("h", "history", "History", id="app.history"),
        Binding("m", "matrix", "Matrix", id="app.matrix"),
        Binding("q", "quit_console", "Quit", id="app.quit"),
    ]

    def __init__(
        self,
        driver: RolloutDriver,
        *,
        theme: str | None = None,
        start: tuple[str, str] | None = None,
        resume: int | None = None,
        replay: int | None = None,
        speed: float = 10.0,
        offer_resume: bool = True,
        keys: UserKeys | None = None,
    ):
        self.themes = load_themes()
        self.theme_name = resolve_theme_name(theme, self.themes)
        super().__init__()
        self.driver = driver
        self.estate: Estate = driver.estate
        self.start_spec = start
        self.resume_id = resume
        self.replay_id = replay
        self.speed = speed
        self.offer_resume = offer_resume
        self.farewell: str | None = None
        self.keys = keys
        module = next(iter(self.estate.modules), None)
        self.model = ConsoleModel(
            self.estate,
            now=driver.clock.now,
            time_scale=driver.clock.scale,
            current=driver.current_versions(module) if module else {},
            module=module,
        )
        #: the target detail: one screen, opened on enter, read ahead for the selected target
        self.details = DetailOpener(self, self.estate, driver.session.history, self.model)

    def get_theme_variable_defaults(self) -> dict[str, str]:
        # Built-in Textual themes lack sluice's variables: fall back to the default theme's.
        return variable_defaults(self.themes)

    @property
    def console_screen(self) -> ConsoleScreen:
        return self.get_screen("console")  # type: ignore[return-value]

    def on_mount(self) -> None:
        for theme in self.themes.values():
            self.register_theme(theme)
        self.theme = self.theme_name
        if self.keys is not None and self.keys.keymap:
            self.set_keymap(self.keys.keymap)
        mode = "watch" if self.driver.read_only else "live"
        self.install_screen(ConsoleScreen(self.driver, self.model, mode=mode), name="console")
        self.push_screen("console")
        if self.driver.read_only:
            self.notify(
                self.driver.read_only,
                title="watching only",
                severity="warning",
                timeout=12,
                markup=False,
            )
        if self.keys is not None and self.keys.problems:
            self.notify(
                "\n".join(self.keys.problems) + "\n(the default keys are in use)",
                title="keys file not applied",
                severity="error",
                timeout=30,
                markup=False,
            )
        self.call_after_refresh(self._opening_move)

    def _opening_move(self) -> None:
        """What ``sluice run`` / ``resume`` / ``replay`` asked for, or the resume offer."""
        if self.replay_id is not None:
            self.push_screen(
                ReplayScreen(
                    self.estate, self.driver.session.history, self.replay_id, speed=self.speed
                )
            )
        elif self.start_spec is not None:
            module, version = self.start_spec
            try:
                plan = self.driver.plan(module, version)
            except PlanError as exc:
                self.notify(str(exc), title="cannot start", severity="error", markup=False)
                return
            self.console_screen.start(plan)
        elif self.resume_id is not None:
            try:
                record = self.driver.session.resumable(self.resume_id or None)
            except ResumeError as exc:
                self.notify(str(exc), title="nothing to resume", severity="warning", markup=False)
                return
            self.console_screen.resume(record)
        elif self.offer_resume:
            left = self.driver.resumable()
            if left is not None:
                self._offer_resume(left)

    def _offer_resume(self, record: RolloutRecord) -> None:
        body = (
            f"Rollout #{record.id} ({record.module} {record.from_versions} → {record.version}, "
            f"started by {record.actor}) was left {record.outcome} with "
            f"{record.waves_done} of {record.waves_total} waves done.\n\n"
            "Resume it? Applies that finished are not run again; applies that were in flight "
            "are re-applied."
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self.console_screen.resume(record)

        self.push_screen(
            ConfirmScreen("Resume a rollout?", body, confirm="Resume", danger=False), answered
        )

    # ------------------------------------------------------------------ app keys

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        sections = [
            ("Console", ConsoleScreen, [*ConsoleScreen.BINDINGS, *RolloutView.BINDINGS]),
            ("History screen (h)", HistoryScreen, HistoryScreen.BINDINGS),
            ("Replay screen (p in history)", ReplayScreen, ReplayScreen.BINDINGS),
            ("Target detail (enter on a target)", TargetDetailScreen, TargetDetailScreen.BINDINGS),
            ("Estate matrix (m)", MatrixScreen, MatrixScreen.BINDINGS),
        ]
        others = [
            (title, keys) for title, cls, keys in sections if not isinstance(self.screen, cls)
        ]
        self.push_screen(HelpScreen(self.screen, others))

    def action_history(self) -> None:
        if isinstance(self.screen, HistoryScreen):
            return
        self.push_screen(HistoryScreen(self.estate, self.driver.session.history, speed=self.speed))

    def action_matrix(self) -> None:
        if isinstance(self.screen, MatrixScreen):
            return
        # One matrix for the console, installed: opening it again repaints its rows (plain
        # data) instead of composing and styling every widget of the screen anew. (Opened
        # again above itself — matrix → detail → m — it is a new one, as a screen is pushed once.)
        installed = self.is_screen_installed("matrix")
        if installed and self.get_screen("matrix") not in self.screen_stack:
            self.push_screen("matrix")
            return
        matrix = MatrixScreen(
            self.estate,
            self.driver.session.history,
            running=self._running_cells,
            detail_options=self.details.live_options,
            open_detail=self._open_detail_from,
        )
        if not installed:
            self.install_screen(matrix, name="matrix")
        self.push_screen(matrix)

    def _running_cells(self) -> Running:
        """What the console's model shows of the running rollout, by (module, target)."""
        model = self.model
        if not model.running():
            return {}
        return {(model.module, t.name): t.status for t in model.targets.values() if t.wave}

    @on(RolloutView.DetailRequested)
    def _open_detail(self, message: RolloutView.DetailRequested) -> None:
        self.details.open(message.view, message.target)

    def _open_detail_from(self, screen: Screen[None], target: str) -> None:
        """``enter`` in the console's matrix: the console's one detail screen, as from the tree."""
        self.details.open_from(screen, target, None, self.details.live_options(target))

    @on(RolloutView.TargetSelected)
    def _target_selected(self, message: RolloutView.TargetSelected) -> None:
        self.details.selected(message.view, message.target)

    def on_unmount(self) -> None:
        self.details.close()

    def action_quit_console(self) -> None:
        leaving = self.driver.left_running()
        if leaving is None:
            self.exit(self._exit_code())
            return
        ask, farewell = leaving

        def answered(yes: bool | None) -> None:
            if yes:
                self.farewell = f"sluice: {farewell}"
                self.exit(ExitCode.STOPPED)

        self.push_screen(ConfirmScreen("Quit while a rollout runs?", ask, confirm="Quit"), answered)

    def _exit_code(self) -> int:
        outcome = self.driver.outcome
        asked = self.start_spec is not None or self.resume_id is not None
        return outcome.exit_code if asked and outcome is not None else ExitCode.OK


def _trust_the_terminal() -> None:
    """Size the screen by asking the terminal, not by COLUMNS/LINES from the environment.

    Textual sizes itself with ``shutil.get_terminal_size()``, which prefers those variables; a
    stale exported pair (a wrapper script, a CI shell, tmux started from one) draws the console
    at the wrong size in a perfectly good terminal.
    """
    if sys.__stdout__ is not None and sys.__stdout__.isatty():
        os.environ.pop("COLUMNS", None)
        os.environ.pop("LINES", None)


def run_console(
    estate: Estate,
    *,
    theme: str | None = None,
    time_scale: float = 1.0,
    start: tuple[str, str] | None = None,
    resume: int | None = None,
    replay: int | None = None,
    speed: float = 10.0,
) -> int:
    """Open the console on ``estate_path``; returns the exit code (docs/design.md: the command line)."""
    try:
        resolve_theme_name(theme, load_themes())
    except ThemeError as exc:
        print(f"sluice: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    read_only: str | None = None
    try:
        try:
            session = open_session(estate, drive=replay is None)
        except LeaseHeld as exc:
            if start is not None or resume is not None:
                print(exc.refusal, file=sys.stderr)
                return ExitCode.LOCKED
            session = open_session(estate, drive=False)
            read_only = f"{exc}: this console only watches"
    except HistoryError as exc:
        print(f"sluice: {exc}", file=sys.stderr)
        if isinstance(exc, HistoryNotWritable):
            return ExitCode.HISTORY_UNWRITABLE
        return ExitCode.BAD_INPUT
    _trust_the_terminal()
    driver = RolloutDriver(session, Clock(time_scale), read_only=read_only)
    keys = read_keys(default_path(), binding_scopes())
    try:
        app = SluiceApp(
            driver, theme=theme, start=start, resume=resume, replay=replay, speed=speed, keys=keys
        )
        code = app.run()
    finally:
        session.close()
    if app.farewell:
        print(app.farewell, file=sys.stderr)
    for line in keys.problems:  # shown in the console too; kept on the terminal after it
        print(line, file=sys.stderr)
    return int(code or 0)


def binding_scopes() -> dict[str, list[Binding | tuple[str, ...]]]:
    """The console's screens and the bindings active on each (the app's own are everywhere):
    what a user's keys file is checked against (:func:`sluice.tui.keymap.read_keys`)."""
    from sluice.tui.screens.console import ConsoleScreen
    from sluice.tui.screens.help import HelpScreen
    from sluice.tui.screens.history import HistoryScreen
    from sluice.tui.screens.matrix import MatrixScreen
    from sluice.tui.screens.replay import ReplayScreen
    from sluice.tui.screens.target_detail import TargetDetailScreen
    from sluice.tui.widgets.rollout_view import RolloutView

    app = list(SluiceApp.BINDINGS)
    return {
        "console": [*app, *ConsoleScreen.BINDINGS, *RolloutView.BINDINGS],
        "history screen": [*app, *HistoryScreen.BINDINGS],
        "replay screen": [*app, *ReplayScreen.BINDINGS, *RolloutView.BINDINGS],
        "target detail": [*app, *TargetDetailScreen.BINDINGS],
        "estate matrix": [*app, *MatrixScreen.BINDINGS],
        "help screen": list(HelpScreen.BINDINGS),
    }
