"""Replay: a recorded rollout on the console's own widgets, with a transport bar.

Recorded events are published into an ordinary :class:`EventBus` that the :class:`RolloutView`
follows exactly as it follows a live rollout. A seek rebuilds the model from the recorded events
before the cursor (instantly), then playing continues from there.
"""

from __future__ import annotations

import asyncio
import time

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Label

from sluice.engine.model.estate import Estate
from sluice.engine.rollout.events import EventBus
from sluice.engine.store.history import History
from sluice.engine.store.replay import ReplaySource
from sluice.tui.model import ConsoleModel, clock_text
from sluice.tui.screens.covered import Covered
from sluice.tui.widgets.keys_footer import KeysFooter
from sluice.tui.widgets.rollout_view import RolloutView

SPEEDS = (1, 2, 5, 10, 20, 30, 60)
SEEK_SECONDS = 30.0
DISABLED = "replay: operator commands are disabled — this is a recording"


class ReplayScreen(Covered, Screen[None]):
    """Plays rollout ``rollout_id`` from ``history``."""

    BINDINGS = [
        Binding("space", "play", "Play/pause", id="replay.play"),
        Binding("plus,equals_sign", "faster", "Faster", id="replay.faster"),
        Binding("minus", "slower", "Slower", id="replay.slower"),
        Binding("left", "seek_wave(-1)", "◀ wave", id="replay.previous_wave"),
        Binding("right", "seek_wave(1)", "wave ▶", id="replay.next_wave"),
        Binding("left_square_bracket", "seek_time(-1)", "-30s", id="replay.back_time"),
        Binding("right_square_bracket", "seek_time(1)", "+30s", id="replay.forward_time"),
        Binding("escape", "close", "Back", id="replay.close"),
        # Operator commands exist here too, so pressing one says why nothing happens.
        *(Binding(key, "disabled", show=False) for key in ("n", "a", "t", "r", "R", "x", "b", "d")),
    ]

    playing = reactive(True)
    """Whether the replay is advancing."""
    speed = reactive(10.0)
    """Recorded seconds per real second."""

    def __init__(
        self,
        estate: Estate,
        history: History,
        rollout_id: int,
        *,
        speed: float = 10.0,
        autoplay: bool = True,
    ):
        super().__init__(id="replay")
        self.history_path = estate.history  # a file, or the URL (with its password): reopened
        #: Empty until the recording is read off the UI thread (:meth:`_load`).
        self.source = ReplaySource(None, rollout_id)
        self.reading = True
        self.loaded_at: float | None = None
        self.rollout_id = rollout_id
        self.bus = EventBus()
        self._last_ts = self.source.start
        self._last_wall = time.monotonic()
        self.model = ConsoleModel(estate, now=self._now, estimates=False)
        self.set_reactive(ReplayScreen.speed, float(speed))
        self.set_reactive(ReplayScreen.playing, autoplay)

    def compose(self) -> ComposeResult:
        yield RolloutView(self.model, mode="replay", id="replay-view")
        yield Label("", id="transport", markup=False)
        yield KeysFooter()

    @property
    def view(self) -> RolloutView:
        return self.query_one(RolloutView)

    def on_mount(self) -> None:
        self.view.follow(self.bus)
        self.set_interval(0.5, self._paint_transport)
        self._paint_transport()
        self._load()

    def on_screen_resume(self) -> None:
        for view in self.query(RolloutView):  # back from the matrix or a detail
            view.shown_again()

    @work(exclusive=True, group="load")
    async def _load(self) -> None:
        """Read the recording in a thread with its own connection: keys work while it loads."""
        source = await asyncio.to_thread(ReplaySource.load, self.history_path, self.rollout_id)
        self._loaded(source)

    def _loaded(self, source: ReplaySource) -> None:
        self.source, self.reading = source, False
        self.loaded_at = time.monotonic()
        self._last_ts, self._last_wall = source.start, time.monotonic()
        if not source.events:
            self.notify(f"rollout #{self.rollout_id} has no recorded events", severity="warning")
            self.playing = False
        elif self.playing:
            self._play()
        self._paint_transport()

    def _now(self) -> float:
        """Recorded time: the last event's, moving on between events while playing."""
        if not self.playing:
            return self._last_ts
        ahead = (time.monotonic() - self._last_wall) * self.speed
        position = self.source.position
        upcoming = (
            self.source.events[position].ts if position < len(self.source.events) else self._last_ts
        )
        return min(self._last_ts + ahead, max(upcoming, self._last_ts))

    @work(exclusive=True, group="replay")
    async def _play(self) -> None:
        async for event in self.source.play(self.speed):
            self._last_ts, self._last_wall = event.ts, time.monotonic()
            self.bus.publish(event)
        self.playing = False
        self._paint_transport()

    # ------------------------------------------------------------------ transport

    def action_play(self) -> None:
        if self.source.position >= len(self.source.events):
            self._seek_to(0)
        self.playing = not self.playing

    def watch_playing(self, playing: bool) -> None:
        if not self.is_mounted or self.reading:
            return
        self._last_wall = time.monotonic()
        if playing:
            self._play()
        else:
            self.workers.cancel_group(self, "replay")
        self._paint_transport()

    def action_faster(self) -> None:
        self.speed = next((s for s in SPEEDS if s > self.speed), SPEEDS[-1])

    def action_slower(self) -> None:
        self.speed = next((s for s in reversed(SPEEDS) if s < self.speed), SPEEDS[0])

    def watch_speed(self) -> None:
        if self.is_mounted and self.playing and not self.reading:
            self._play()  # exclusive: restarts from the cursor at the new speed
        self._paint_transport()

    def action_seek_wave(self, step: int) -> None:
        starts = self.source.wave_starts()
        if not starts:
            return
        current = self.model.current_wave or 0
        target = max(1, min(max(starts), current + step))
        if step < 0 and current in starts and self.source.position > starts[current] + 1:
            # From inside a wave, ◀ goes back to its start first, like a music player.
            target = current
        # Land just after the wave's WaveStarted, so the screen shows that wave begun.
        self._seek_to(self.source.seek_wave(target) + 1)

    def action_seek_time(self, direction: int) -> None:
        offset = self._last_ts - self.source.start + direction * SEEK_SECONDS
        self._seek_to(self.source.seek_time(max(0.0, offset)))

    def _seek_to(self, position: int) -> None:
        self.workers.cancel_group(self, "replay")
        self.source.position = position
        # A fresh subscription: events queued for the old position must not be drawn.
        self.view.follow(self.bus)
        self.model.reset_idle({})
        before = self.source.until_cursor()
        self.model.apply_all(before)
        self._last_ts = before[-1].ts if before else self.source.start
        self._last_wall = time.monotonic()
        self.call_next(self.view.repaint)
        if self.playing:
            self._play()
        self._paint_transport()

    def _paint_transport(self) -> None:
        if not self.is_mounted:
            return
        total = max(0.0, self.source.end - self.source.start)
        at = max(0.0, min(total, self._now() - self.source.start))
        state = "▶ playing" if self.playing else "‖ paused"
        if self.reading:
            state = "… loading the recording"
        elif self.source.position >= len(self.source.events) and self.source.events:
            state = "■ end of recording"
        waves = len(self.source.wave_starts())
        wave = self.model.current_wave or 0
        self.query_one("#transport", Label).update(
            f" {state} · {self.speed:g}× · wave {wave}/{self.model.waves and len(self.model.waves) or waves} · "
            f"{clock_text(at)} / {clock_text(total)} · replay of rollout #{self.rollout_id} — "
            "space play/pause · +/- speed · ←/→ wave · [/] 30s · esc back"
        )

    def action_disabled(self) -> None:
        self.notify(DISABLED, title="replay", severity="warning")

    def action_close(self) -> None:
        self.workers.cancel_group(self, "replay")
        self.workers.cancel_group(self, "load")
        self.app.pop_screen()
