"""Pilot tests: requests from other terminals (real ``sluice`` processes) carried out by the console,
shown as they arrive; entry approvals and freezes on screen."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from tui_support import (
    ROOT,
    Console,
    MakeConsole,
    running,
    screen_as,
    start_rollout,
    state_is,
    until,
)

from sluice.tui.screens.console import ConsoleScreen
from sluice.tui.widgets.header import RolloutHeader

pytestmark = pytest.mark.timeout(90)


async def sluice(*args: object, actor: str = "remote") -> tuple[int, str, str]:
    """A real ``sluice`` process, awaited without blocking the console's event loop."""
    env = dict(os.environ, SLUICE_ACTOR=actor)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sluice.cli", *map(str, args), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


def logged(console: Console, text: str) -> bool:
    return any(text in line for line in screen_as(console.app, ConsoleScreen).model.event_log)


async def test_the_console_says_what_it_waits_for_and_carries_out_each_request(
    make_console: MakeConsole, estate_path: Path
) -> None:
    console = make_console()
    async with running(console) as pilot:
        await start_rollout(pilot, console, "2.0.1")
        await until(pilot, state_is(console, "awaiting_entry"), timeout=40)
        rollout = console.rollout
        header = console.app.screen.query_one(RolloutHeader)
        await until(pilot, lambda: header.wave == "W5 production 1/3")
        assert rollout.waves[5].status == "pending"
        progress = screen_as(console.app, ConsoleScreen).model.waves[5]
        assert progress.detail == "production needs approval to start: 0 of 1"

        code, out, _ = await sluice("pause", estate_path, "--reason", "coffee", actor="erin")
        assert code == 0 and out.startswith("paused") and rollout.paused
        await until(pilot, lambda: logged(console, "request from erin: pause — paused"))
        code, _, err = await sluice("pause", estate_path, actor="erin")
        assert code == 1 and "already paused" in err
        code, out, _ = await sluice("unpause", estate_path, actor="erin")
        assert (code, out.strip()) == (0, "resumed") and not rollout.paused

        code, out, _ = await sluice("approve", estate_path, "--wave", "5", actor="erin")
        assert (code, out.strip()) == (0, "wave 5 approved")
        await until(pilot, state_is(console, "awaiting_approval"), timeout=40)
        assert logged(console, "● approve wave 5 by erin")

        code, out, _ = await sluice("abort", estate_path, "--reason", "demo over", actor="erin")
        assert code == 0 and out.startswith("aborting")
        await until(pilot, lambda: rollout.outcome is not None, timeout=40)
        assert rollout.outcome.outcome == "aborted" and "erin: demo over" in rollout.outcome.summary
        code, _, err = await sluice("approve", estate_path, actor="erin")
        assert code == 4 and "no rollout is running" in err


async def test_a_freeze_shows_in_the_console_and_refuses_a_new_rollout(
    make_console: MakeConsole, estate_path: Path
) -> None:
    console = make_console()
    async with running(console) as pilot:
        code, _, err = await sluice(
            "freeze", estate_path, "--reason", "incident 42", actor="oncall"
        )
        assert code == 0, err
        header = console.app.screen.query_one(RolloutHeader)
        await until(pilot, lambda: "estate frozen by oncall" in header.frozen, timeout=10)
        assert header.frozen.endswith("incident 42")
        await start_rollout_refused(pilot, console)
        code, _, _ = await sluice("unfreeze", estate_path, actor="oncall")
        assert code == 0
        await until(pilot, lambda: header.frozen == "", timeout=10)


async def start_rollout_refused(pilot: Pilot, console: Console) -> None:
    notified: list[str] = []
    original = console.app.screen.notify

    def capture(message: str, *args: Any, **kwargs: Any) -> None:
        notified.append(str(message))
        return original(message, *args, **kwargs)

    console.app.screen.notify = capture  # type: ignore[method-assign]
    await start_rollout_without_waiting(pilot, console)
    await until(pilot, lambda: any("not started: estate frozen" in m for m in notified))
    assert console.driver.rollout is None


async def start_rollout_without_waiting(pilot: Pilot, console: Console) -> None:
    await pilot.press("n")
    await until(pilot, lambda: type(console.app.screen).__name__ == "NewRolloutScreen")
    await pilot.press("s")
    await until(pilot, lambda: type(console.app.screen).__name__ == "ConsoleScreen")
