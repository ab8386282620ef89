"""Replay: recorded events drive the same widgets; the end of a replay looks like the live end."""

from __future__ import annotations

import time
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.screen import Screen
from tui_support import (
    Console,
    MakeConsole,
    caught_up,
    notifications,
    running,
    screen_as,
    start_rollout,
    state_is,
    until,
)

from sluice.tui.screens.replay import SPEEDS, ReplayScreen
from sluice.tui.widgets.estate_tree import EstateTree
from sluice.tui.widgets.header import RolloutHeader
from sluice.tui.widgets.metrics import MetricRow
from sluice.tui.widgets.rollout_log import RolloutLog
from sluice.tui.widgets.wave_progress import WaveRow

pytestmark = pytest.mark.timeout(180)  # replays a whole rollout; at load 14 one took 123 s


def panes(screen: Screen[Any]) -> dict[str, object]:
    """What the rollout view shows, as plain text (tree, wave rows, metrics, log, header)."""
    tree = screen.query_one(EstateTree)
    lines = []
    for line_no in range(tree.last_line + 1):
        node = tree.get_node_at_line(line_no)
        lines.append(str(node.label) if node else "")
    waves = []
    for row in screen.query(WaveRow):
        wave = row.data
        assert wave is not None
        waves.append((wave.title.plain, wave.done, wave.total, wave.budget.plain, wave.gate.plain))
    metrics = []
    for metric_row in screen.query(MetricRow):
        metric = metric_row.data
        assert metric is not None
        metrics.append((metric.label.plain, metric.values, metric.outcomes))
    log = [str(line.text) for line in screen.query_one(RolloutLog).lines]
    header = screen.query_one(RolloutHeader)
    return {
        "tree": lines,
        "waves": waves,
        "metrics": metrics,
        "log": log,
        "header": (header.rollout, header.change, header.state, header.elapsed),
    }


async def _finished_rollout(pilot: Pilot, console: Console) -> None:
    """2.0.0 to its halt, roll the dev wave back, then abort: a full record."""
    await start_rollout(pilot, console, "2.0.0")
    await until(pilot, state_is(console, "halted"))
    await pilot.press("r", "y")
    rollout = console.rollout
    await until(pilot, lambda: rollout.waves[2].status == "rolled_back")
    await pilot.press("x", "y")
    await until(pilot, lambda: rollout.outcome is not None)
    await until(pilot, lambda: caught_up(console))


async def test_replay_to_the_end_matches_the_live_end(make_console: MakeConsole) -> None:
    console = make_console(speed=10_000)
    async with running(console) as pilot:
        await _finished_rollout(pilot, console)
        await pilot.pause(0.1)
        live = panes(console.app.screen)
        await pilot.press("h")
        await until(pilot, lambda: type(console.app.screen).__name__ == "HistoryScreen")
        await pilot.press("p")
        await until(pilot, lambda: isinstance(console.app.screen, ReplayScreen))
        replay = screen_as(console.app, ReplayScreen)
        await until(pilot, lambda: not replay.playing, timeout=60)
        await until(pilot, lambda: caught_up(console))
        await pilot.pause(0.1)
        replayed = panes(replay)
        for part in ("tree", "waves", "metrics", "log", "header"):
            assert replayed[part] == live[part], part


async def test_transport_speed_pause_and_seek(make_console: MakeConsole) -> None:
    console = make_console(speed=10)
    async with running(console) as pilot:
        await _finished_rollout(pilot, console)
        rollout_id = console.rollout.rollout_id
        history = console.driver.session.history
        screen = ReplayScreen(console.app.estate, history, rollout_id, speed=10, autoplay=False)
        await console.app.push_screen(screen)
        replay = screen_as(console.app, ReplayScreen)
        assert replay is screen and not replay.playing
        await until(pilot, lambda: not replay.reading)
        await pilot.pause(0.3)
        assert replay.source.position == 0  # paused means paused
        await pilot.press("space")
        assert replay.playing
        await until(pilot, lambda: replay.source.position > 0)
        await pilot.press("space")
        assert not replay.playing
        await pilot.press("left_square_bracket")  # 30 s back: the start
        await until(pilot, lambda: replay.source.position == 0)
        await pilot.press("plus", "plus")
        assert replay.speed == 30
        for _ in range(len(SPEEDS)):
            await pilot.press("plus")
        assert replay.speed == 60
        await pilot.press("minus")
        assert replay.speed == 30
        await pilot.press("right")  # seek to the next wave: the first
        await until(pilot, lambda: replay.model.current_wave == 1)
        await pilot.press("right")
        await until(pilot, lambda: replay.model.current_wave == 2)
        assert replay.model.waves[1].status == "passed"  # everything before the cursor replayed
        await pilot.press("left")  # at the start of wave 2: back to wave 1
        await until(pilot, lambda: replay.model.current_wave == 1)
        assert replay.model.waves[2].status == "pending"
        start_of_1 = replay.source.position
        await pilot.press("right_square_bracket")  # 30 s on
        await pilot.pause()
        assert replay.source.position > start_of_1
        await pilot.press("left")  # inside a wave: back to its start
        await until(pilot, lambda: replay.source.position == start_of_1)
        await pilot.press("space")  # play on from there
        assert replay.playing
        await pilot.press("x")  # operator commands are disabled here
        await pilot.pause()
        assert any("disabled" in n.message for n in notifications(console.app))
        await pilot.press("escape")
        await until(pilot, lambda: type(console.app.screen).__name__ == "ConsoleScreen")


@pytest.mark.timeout(180)
async def test_a_large_recording_loads_without_blocking_keys(make_console: MakeConsole) -> None:
    """100,000 recorded events: the recording is read off the UI thread, so a key pressed while
    it loads is handled before the load ends."""
    from sluice.engine.rollout.events import ApplyOutput, EventBus
    from sluice.engine.store.recorder import Recorder

    console = make_console(speed=10_000)
    async with running(console) as pilot:
        await _finished_rollout(pilot, console)
        rollout_id = console.rollout.rollout_id
        history = console.driver.session.history
        recorder = Recorder(history, rollout_id, "postgres-operator")
        bus = EventBus(start_seq=history.last_seq(rollout_id) + 1)
        bus.listen(recorder)
        for i in range(100_000):
            bus.emit(ApplyOutput, target="dev-eu-1", stream="stdout", line=f"line {i}")
        recorder.flush()
        assert len(history.event_rows(rollout_id)) > 100_000

        pressed = time.monotonic()
        screen = ReplayScreen(console.app.estate, history, rollout_id, speed=10, autoplay=False)
        handled: list[float] = []
        say_disabled = screen.action_disabled

        def action_disabled() -> None:
            handled.append(time.monotonic())
            say_disabled()

        screen.action_disabled = action_disabled  # type: ignore[method-assign]
        console.app.push_screen(screen)
        console.app.simulate_key("x")  # at once, as the screen opens: it says it is disabled
        await until(pilot, lambda: not screen.reading, timeout=60)
        await until(pilot, lambda: bool(handled))
        assert len(screen.source.events) > 100_000
        assert screen.loaded_at is not None
        print(
            f"key handled {1000 * (handled[0] - pressed):.1f} ms after opening the replay (mounting included); "
            f"the load ended at {1000 * (screen.loaded_at - pressed):.0f} ms"
        )
