"""The history screen's backtest (t) and point-in-time restore (u), driven with keys."""

from __future__ import annotations

import pytest
from tui_support import Console, MakeConsole, running, screen_as, start_rollout, state_is, until

from sluice.tui.screens.modals import ConfirmScreen, TextScreen

pytestmark = pytest.mark.timeout(300)
#: Whole rollouts run inside these waits: on a loaded machine they take longer than `until`'s 20 s.
LONG = 90.0


def _screen(console: Console) -> str:
    return type(console.app.screen).__name__


async def test_t_backtests_the_selected_rollout(make_console: MakeConsole) -> None:
    console = make_console()
    async with running(console) as pilot:
        await start_rollout(pilot, console)  # 2.0.0: halts at dev's latency gate
        await until(pilot, state_is(console, "halted"), timeout=LONG)
        await pilot.press("h")
        await until(pilot, lambda: _screen(console) == "HistoryScreen")
        await pilot.press("b")
        await until(pilot, lambda: _screen(console) == "TextScreen")
        text = "\n".join(screen_as(console.app, TextScreen).lines)
        assert "backtest of rollout #1 (postgres-operator → 2.0.0)" in text
        assert "= wave 2 dev 1/1: recorded failed at 6s, now failed at 6s" in text
        assert "with the same checks: every recorded verdict unchanged (2 waves)" in text


async def test_u_restores_the_estate_to_the_selected_rollout(make_console: MakeConsole) -> None:
    console = make_console()
    history = console.driver.session.history
    async with running(console) as pilot:
        await start_rollout(pilot, console, "2.0.1")  # healthy: stops at production's approvals
        await until(pilot, state_is(console, "awaiting_entry"), timeout=LONG)
        await pilot.press("a")  # production needs approval to start
        for wave in (5, 6, 7):  # production's three waves, each a manual gate
            await until(pilot, state_is(console, "awaiting_approval"), timeout=LONG)
            assert console.rollout.current_wave == wave
            await pilot.press("a")

            def approved(wave: int = wave) -> bool:
                return console.rollout.waves[wave].status == "approved"

            await until(pilot, approved)
        await until(pilot, state_is(console, "done"), timeout=LONG)
        after_first = history.ledger("postgres-operator")
        await start_rollout(pilot, console, "2.0.0")  # halts in dev: ephemeral and dev on 2.0.0
        await until(pilot, state_is(console, "halted"), timeout=LONG)
        assert history.ledger("postgres-operator") != after_first
        await pilot.press("x")  # abort it: a restore does not start beside a running rollout
        await until(pilot, lambda: _screen(console) == "ConfirmScreen")
        await pilot.press("y")
        await until(pilot, state_is(console, "aborted"))

        await pilot.press("h")
        await until(pilot, lambda: _screen(console) == "HistoryScreen")
        await pilot.press("down")  # rollout #1, the 2.0.1 one (newest first)
        await pilot.press("u")
        await until(pilot, lambda: _screen(console) == "ConfirmScreen")
        body = screen_as(console.app, ConfirmScreen).body
        assert "changed since #1" in body and "1. postgres-operator on" in body
        assert "2.0.0 → 2.0.1" in body
        await pilot.press("y")
        await until(pilot, lambda: _screen(console) == "ConsoleScreen")
        await until(
            pilot,
            lambda: history.ledger("postgres-operator") == after_first,
            timeout=LONG,
        )
        await until(pilot, state_is(console, "done"), timeout=LONG)
    restore = history.rollouts()[0]
    assert restore.version == "as of #1" and restore.plan["restore"]["label"] == "#1"
    assert restore.outcome == "done"
