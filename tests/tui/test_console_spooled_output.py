"""The output pane reads the spool where the events do not hold an apply's whole output (issue
11): real local applies print more than the event stream keeps (it elides the middle), so the
live pane and the replay's both show the spool's tail — the last line included, no elision."""

from __future__ import annotations

from typing import Any

import pytest
from tui_support import Console, caught_up, running, start_rollout, state_is, until

from sluice.engine.executors.local import LocalExecutor
from sluice.engine.model.estate import ExecutorSpec
from sluice.tui.screens.replay import ReplayScreen
from sluice.tui.widgets.estate_tree import EstateTree
from sluice.tui.widgets.rollout_log import ELIDED, RolloutLog

#: 700 lines of ~1 kB: more than the event stream's 512 kB of head and tail.
LOUD = (
    'pad=$(printf "%01000d" 0); i=0; while [ $i -lt 700 ]; do echo "line $i $pad"; '
    'i=$((i+1)); done; echo "the last line"'
)


def loud(spec: Any, estate: Any, clock: Any, resources: Any) -> Any:
    if spec.kind != "simulated" or not spec.name.startswith("preview"):
        from sluice.engine.executors.base import create_executor

        return create_executor(spec, estate, clock, resources)
    return LocalExecutor(ExecutorSpec("loud", "local", {"apply": LOUD}), estate, clock, resources)


def select_target(screen: Any, target: str) -> None:
    tree = screen.query_one(EstateTree)
    tree.move_cursor(tree._by_ref[("target", target)])


def shows_the_spool(lines: list[str]) -> bool:
    return (
        bool(lines)
        and lines[0] == "from its spool: stdout, then stderr"
        and lines[-1] == "the last line"
        and not any(ELIDED in line for line in lines)
    )


@pytest.mark.timeout(240)
async def test_live_and_replayed_panes_show_the_spooled_output_the_events_elided(
    make_console,
) -> None:
    console: Console = make_console(executor_factory=loud, speed=10_000)
    async with running(console) as pilot:
        await start_rollout(pilot, console)
        await until(pilot, state_is(console, "halted"), timeout=120)
        await until(pilot, lambda: caught_up(console))
        target = console.rollout.waves[1].targets[0]
        model = console.app.screen.query_one("#view").model  # type: ignore[attr-defined]
        assert any(ELIDED in line for _, line in model.targets[target].output)  # events: elided
        select_target(console.app.screen, target)
        await pilot.pause()
        live = [str(line.text) for line in console.app.screen.query_one(RolloutLog).lines]
        assert shows_the_spool(live), live[:3] + live[-3:]

        await pilot.press("x", "y")
        rollout = console.rollout
        await until(pilot, lambda: rollout.outcome is not None)
        history = console.driver.session.history
        screen = ReplayScreen(
            console.app.estate, history, rollout.rollout_id, speed=10_000, autoplay=False
        )
        await console.app.push_screen(screen)
        await until(pilot, lambda: not screen.reading, timeout=60)
        for _ in range(200):  # 30 s on at a time, to the end of the recording
            if screen.source.position >= len(screen.source.events):
                break
            await pilot.press("right_square_bracket")
        assert screen.source.position == len(screen.source.events)
        await until(pilot, lambda: caught_up(console))
        select_target(screen, target)
        await pilot.pause()
        replayed = [str(line.text) for line in screen.query_one(RolloutLog).lines]
        assert shows_the_spool(replayed), replayed[:3] + replayed[-3:]
        assert replayed[1:] == live[1:]
