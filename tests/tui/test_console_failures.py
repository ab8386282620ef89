"""An engine failure while the console drives a rollout is shown, recorded and resumable."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from textual.app import App
from textual.widgets import Label
from tui_support import MakeConsole, notifications, running, start_rollout, state_is, until

from sluice.engine.executors.base import create_executor
from sluice.engine.store.history import History
from sluice.tui.widgets.rollout_log import RolloutLog


class DefectiveExecutor:
    """An executor with a bug where the engine calls it outside an apply (``describe``)."""

    def __init__(self, spec: Any, estate: Any, clock: Any, resources: Any):
        self.inner = create_executor(spec, estate, clock, resources)

    def describe(self, job: Any) -> str:
        raise RuntimeError("describe() broke")

    async def apply(self, job: Any, output: Any) -> Any:
        return await self.inner.apply(job, output)

    async def close(self) -> None:
        await self.inner.close()


def _messages(app: App[Any]) -> list[tuple[str, str]]:
    return [(n.severity, n.message) for n in notifications(app)]


async def test_an_engine_failure_is_on_screen_in_history_and_resumable(
    make_console: MakeConsole, estate_path: Path
) -> None:
    console = make_console(executor_factory=DefectiveExecutor)
    async with running(console) as pilot:
        await start_rollout(pilot, console)
        started = time.monotonic()
        await until(pilot, state_is(console, "crashed"), timeout=5)
        screen = console.app.screen

        def shown() -> bool:
            badge = str(screen.query_one("#state-badge", Label).render())
            log = "\n".join(strip.text for strip in screen.query_one(RolloutLog).lines)
            return "CRASHED" in badge.upper() and "the engine failed" in log

        await until(pilot, shown, timeout=5)
        assert time.monotonic() - started < 1.0  # within a second of the failure
        errors = [m for severity, m in _messages(console.app) if severity == "error"]
        assert any("RuntimeError: describe() broke" in m for m in errors), errors
        rollout_id = console.rollout.rollout_id

    # History says crashed, names the traceback's file, and resume would continue it.
    history = History.open(estate_path.parent / ".sluice" / "history.db", create=False)
    try:
        record = history.rollout(rollout_id)
        assert record is not None and record.outcome == "crashed"
        assert record.summary is not None
        assert "traceback in" in record.summary and "sluice resume" in record.summary
        assert [r.id for r in history.unfinished()] == [rollout_id]
    finally:
        history.close()
    logs = list((estate_path.parent / ".sluice" / "logs").glob("crash-*.log"))
    assert len(logs) == 1 and logs[0].stat().st_mode & 0o777 == 0o600
    assert "RuntimeError: describe() broke" in logs[0].read_text()
    assert str(logs[0]) in record.summary


async def test_a_failure_around_the_rollout_is_shown_not_swallowed(
    make_console: MakeConsole,
) -> None:
    console = make_console()

    async def broken_drive() -> Any:
        raise OSError("the recorder lost its disk")

    console.driver.drive = broken_drive  # type: ignore[method-assign]
    async with running(console) as pilot:
        await start_rollout(pilot, console)
        screen = console.app.screen

        def shown() -> bool:
            badge = str(screen.query_one("#state-badge", Label).render())
            return "CRASHED" in badge.upper()

        await until(pilot, shown, timeout=5)
        errors = [m for severity, m in _messages(console.app) if severity == "error"]
        assert any("OSError: the recorder lost its disk" in m for m in errors), errors
        assert any("traceback in" in m for m in errors)
