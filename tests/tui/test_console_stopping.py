"""The console while applies are being stopped (issue 11): real local applies that trap the stop
signal and keep running, so the abort waits out their ``stop_grace``. The stop line shows each
one's signal and the SIGKILL to come, counting down every second; a second ``x`` asks (the
default is no), and only a yes kills them at once."""

from __future__ import annotations

import re
from typing import Any

import pytest
from tui_support import Console, running, start_rollout, state_is, until

from sluice.engine.executors.local import LocalExecutor
from sluice.engine.model.estate import ExecutorSpec
from sluice.tui.screens.modals import ConfirmScreen
from sluice.tui.widgets.stop_line import StopLine

#: Prints "ready", then on SIGINT keeps "cleaning up" until SIGKILL.
STUBBORN = (
    "trap 'echo cleaning up; while :; do sleep 0.05; done' INT; "
    "echo ready; while :; do sleep 0.05; done"
)


def stubborn(spec: Any, estate: Any, clock: Any, resources: Any) -> LocalExecutor:
    settings = {"apply": STUBBORN, "stop_signal": "SIGINT", "stop_grace": 300.0}
    return LocalExecutor(ExecutorSpec("stubborn", "local", settings), estate, clock, resources)


def stop_text(console: Console) -> str:
    line = console.app.screen.query_one(StopLine)
    return line.text if line.display else ""


def printed(console: Console, what: str) -> bool:
    rollout = console.driver.rollout
    view = console.app.screen.query_one("#view").model  # type: ignore[attr-defined]
    return rollout is not None and any(
        line == what for t in view.targets.values() for _, line in t.output
    )


@pytest.mark.timeout(240)
async def test_the_stop_line_counts_down_and_a_second_x_asks_before_sigkill(make_console) -> None:
    console = make_console(executor_factory=stubborn)
    async with running(console) as pilot:
        await start_rollout(pilot, console)
        await until(pilot, lambda: printed(console, "ready"))
        assert stop_text(console) == ""  # nothing stopping: no line
        await pilot.press("x")
        await until(pilot, lambda: isinstance(console.app.screen, ConfirmScreen))
        await pilot.press("y")
        pattern = re.compile(r"stopping eph-\d+: SIGINT sent (\d+) s ago, SIGKILL in \dm\d\ds")
        await until(pilot, lambda: pattern.search(stop_text(console)) is not None)
        first = pattern.search(stop_text(console))
        assert first is not None
        # Live: a second later the same line says so, without any event arriving.
        await until(
            pilot,
            lambda: (
                (m := pattern.search(stop_text(console))) is not None
                and int(m.group(1)) > int(first.group(1))
            ),
            timeout=10,
        )
        assert console.driver.rollout.outcome is None  # still waiting out the grace

        await pilot.press("x")  # the second abort asks first; the default answer is no
        await until(pilot, lambda: isinstance(console.app.screen, ConfirmScreen))
        dialog = console.app.screen
        assert dialog.title_text == "Kill the stopping applies now?"
        assert "SIGINT sent" in dialog.body and "SIGKILL in" in dialog.body
        assert dialog.focused is not None and dialog.focused.id == "no"
        await pilot.press("enter")  # the focused button: Cancel
        await until(pilot, lambda: not isinstance(console.app.screen, ConfirmScreen))
        await pilot.pause(0.3)
        assert console.driver.rollout.outcome is None and pattern.search(stop_text(console))

        await pilot.press("x")
        await until(pilot, lambda: isinstance(console.app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: console.driver.rollout.outcome is not None)
        outcome = console.rollout.outcome
        assert outcome is not None and outcome.outcome == "aborted"
        await until(pilot, lambda: stop_text(console) == "")
        assert state_is(console, "aborted")()
