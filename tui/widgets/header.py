"""The header: estate, rollout, module from → to, state, elapsed and ETA."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widgets import Label

from sluice.engine.model.units import format_duration
from sluice.tui.model import ConsoleModel, clock_text

#: State → the CSS class (and so the theme colour) of the state badge.
STATE_CLASS = {
    "idle": "idle",
    "running": "running",
    "soaking": "running",
    "watching": "running",  # rear guard: the last wave is done, earlier ones are still watched
    "rolling_back": "running",
    "paused": "paused",
    "awaiting_approval": "waiting",
    "review_plans": "waiting",
    "planning": "running",
    "awaiting_entry": "waiting",
    "held": "waiting",
    "inconclusive": "waiting",
    "halted": "halted",
    "rolled_back": "halted",
    "done": "done",
    "aborted": "aborted",
    "crashed": "aborted",
    "superseded": "aborted",
    "stopped": "paused",
}
#: Wave statuses of a wave waiting to start (nothing of it applied yet).
HELD = ("awaiting_entry", "held")
STATE_WORDS = {
    "awaiting_approval": "awaiting approval",
    "awaiting_entry": "needs approval",
    "held": "held",
    "rolled_back": "rolled back",
    "review_plans": "plans await review (a)",
}


class RolloutHeader(Horizontal):
    """One line saying where the rollout stands; every part is a reactive."""

    estate = reactive("")
    """The estate's name."""
    rollout = reactive("")
    """``#3``, or empty when no rollout has started."""
    change = reactive("")
    """``postgres-operator 1.12.0 → 2.0.0``."""
    state = reactive("idle")
    """The rollout's state (idle, running, soaking, paused, awaiting_approval, halted, done…)."""
    wave = reactive("")
    """Where the state applies: ``W2 dev 1/1``."""
    elapsed = reactive("")
    """Elapsed time, ``0:01:12``."""
    eta = reactive("")
    """Time left if every gate passes on its own ("—" while it waits for the operator)."""
    mode = reactive("live")
    """``live``, ``replay`` or ``watch`` (read-only)."""
    frozen = reactive("")
    """Why the estate is frozen (``sluice freeze``), or empty."""

    def compose(self) -> ComposeResult:
        yield Label("", id="state-badge")
        yield Label("", id="what", markup=False)
        yield Label("", id="times")

    def on_mount(self) -> None:
        # Watchers fire only on change: paint the initial values once the labels exist.
        self.call_after_refresh(self._paint_all)

    def _paint_all(self) -> None:
        self._paint_state()
        self._paint_what()
        self._paint_times()

    def show(self, model: ConsoleModel) -> None:
        """Copy what the header shows from the model (reactives skip unchanged values)."""
        self.estate = model.estate.name
        self.rollout = f"#{model.rollout_id}" if model.rollout_id is not None else ""
        self.change = f"{model.module} {model.from_text} → {model.version}" if model.version else ""
        self.state = model.state
        # A wave held before it starts (entry approval, window, freeze) is where the state applies.
        held = next((w for w in model.waves.values() if w.status in HELD), None)
        wave = held or model.waves.get(model.current_wave or 0)
        self.wave = f"W{wave.number} {wave.name}" if wave and model.running() else ""
        self.tick(model)

    def tick(self, model: ConsoleModel) -> None:
        """The parts that move with the clock."""
        elapsed = model.elapsed()
        self.elapsed = "" if elapsed is None else clock_text(elapsed)
        if not model.running() or not model.estimates:
            self.eta = ""
        else:
            eta = model.eta()
            self.eta = "—" if eta is None else format_duration(eta)

    def watch_state(self) -> None:
        self._paint_state()

    def watch_mode(self) -> None:
        self._paint_state()

    def _paint_state(self) -> None:
        if not self.is_mounted:
            return
        badge = self.query_one("#state-badge", Label)
        word = STATE_WORDS.get(self.state, self.state).upper()
        prefix = {"replay": "REPLAY · ", "watch": "WATCH · "}.get(self.mode, "")
        badge.update(f" {prefix}{word} ")
        for name in set(STATE_CLASS.values()):
            badge.set_class(STATE_CLASS.get(self.state, "idle") == name, f"-{name}")
        self.set_class(self.mode == "replay", "-replay")

    def watch_estate(self) -> None:
        self._paint_what()

    def watch_rollout(self) -> None:
        self._paint_what()

    def watch_change(self) -> None:
        self._paint_what()

    def watch_wave(self) -> None:
        self._paint_what()

    def _paint_what(self) -> None:
        if not self.is_mounted:
            return
        parts = [self.estate]
        if self.rollout:
            parts.append(f"{self.rollout} {self.change}")
        else:
            parts.append("no rollout running — press n to start one")
        if self.wave:
            parts.append(self.wave)
        if self.frozen:
            parts.append(f"❄ {self.frozen}")
        self.query_one("#what", Label).update(" · ".join(parts), layout=False)

    def watch_frozen(self) -> None:
        self._paint_what()

    def watch_elapsed(self) -> None:
        self._paint_times()

    def watch_eta(self) -> None:
        self._paint_times()

    def _paint_times(self) -> None:
        if not self.is_mounted:
            return
        parts = []
        if self.elapsed:
            parts.append(f"elapsed {self.elapsed}")
        if self.eta:
            parts.append(f"ETA {self.eta}")
        self.query_one("#times", Label).update("  ".join(parts), layout=False)
