"""Pilot tests: every key and modal of the console, asserting on the engine's state."""

from __future__ import annotations

from typing import TypeVar

import pytest
from textual.widgets import DataTable
from tui_support import (
    Console,
    MakeConsole,
    bindings_of,
    estate_with,
    notifications,
    running,
    screen_as,
    start_rollout,
    state_is,
    until,
)

from sluice.engine.rollout.events import ApplyStarted, Event, OperatorAction
from sluice.tui.screens.help import HelpScreen
from sluice.tui.screens.modals import ConfirmScreen, ReasonScreen, TextScreen
from sluice.tui.screens.new_rollout import NewRolloutScreen
from sluice.tui.widgets.estate_tree import EstateTree, NodeRef

pytestmark = pytest.mark.timeout(60)


E = TypeVar("E", bound=Event)


def select(console: Console, ref: NodeRef) -> None:
    """Move the tree cursor to ``ref`` (a user would arrow there)."""
    tree = console.app.screen.query_one(EstateTree)
    tree.move_cursor(tree._by_ref[ref])


def events_of(console: Console, cls: type[E]) -> list[E]:
    return [
        e
        for e in console.driver.session.history.events(console.rollout.rollout_id)
        if isinstance(e, cls)
    ]


async def test_n_shows_the_plan_and_s_starts_it(make_console: MakeConsole) -> None:
    console = make_console()
    async with running(console) as pilot:
        await pilot.press("n")
        await until(pilot, lambda: isinstance(console.app.screen, NewRolloutScreen))
        screen = screen_as(console.app, NewRolloutScreen)
        assert screen.plan is not None and len(screen.plan.waves) == 7
        assert screen.query_one("#plan-table", DataTable).row_count == 7
        assert "36 targets" in str(screen.query_one("#plan-summary").render())
        await pilot.press("s")
        await until(pilot, state_is(console, "halted"))
        rollout = console.rollout
        assert (rollout.plan.module, rollout.plan.version) == ("postgres-operator", "2.0.0")
        assert rollout.current_wave == 2  # 2.0.0 regresses latency in dev: its gate halts


async def test_escape_cancels_the_new_rollout_modal(make_console: MakeConsole) -> None:
    console = make_console()
    async with running(console) as pilot:
        await pilot.press("n")
        await until(pilot, lambda: isinstance(console.app.screen, NewRolloutScreen))
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(console.app.screen, NewRolloutScreen))
        assert console.driver.rollout is None


async def test_changing_version_replans(make_console: MakeConsole) -> None:
    console = make_console()
    async with running(console) as pilot:
        await pilot.press("n")
        await until(pilot, lambda: isinstance(console.app.screen, NewRolloutScreen))
        from textual.widgets import Select

        console.app.screen.query_one("#version", Select).value = "2.0.1"
        await pilot.pause()
        plan = screen_as(console.app, NewRolloutScreen).plan
        assert plan is not None and plan.version == "2.0.1"


async def test_space_pauses_and_resumes_the_engine(make_console: MakeConsole) -> None:
    console = make_console(hold=True)
    async with running(console) as pilot:
        await start_rollout(pilot, console)
        await until(pilot, lambda: console.rollout.state == "running")
        await pilot.press("space")
        assert console.rollout.paused
        await until(pilot, state_is(console, "paused"))
        console.release.set()  # in-flight applies finish; nothing new may start
        await until(pilot, lambda: console.rollout.waves[1].status != "applying")
        await pilot.pause(0.2)
        assert console.rollout.current_wave == 1
        await pilot.press("space")
        assert not console.rollout.paused
        await until(pilot, state_is(console, "halted"))
        actions = [e.action for e in events_of(console, OperatorAction)]
        assert actions[:2] == ["pause", "resume"]


async def test_a_refused_with_the_engines_reason(make_console: MakeConsole) -> None:
    console = make_console(hold=True)
    async with running(console) as pilot:
        await pilot.press("a")
        await pilot.pause()
        assert any("no rollout is running" in n.message for n in notifications(console.app))
        await start_rollout(pilot, console)
        await pilot.press("a")  # applying: no gate waiting, no soak to end
        await pilot.pause()
        assert any("nothing to advance" in n.message for n in notifications(console.app))
        console.release.set()


async def test_a_approves_a_manual_gate(make_console: MakeConsole) -> None:
    console = make_console()
    async with running(console) as pilot:
        await start_rollout(pilot, console, "2.0.1")
        # The sample's production has entry = "manual": approved before its first wave...
        await until(pilot, state_is(console, "awaiting_entry"))
        rollout = console.rollout
        assert rollout.current_wave == 5 and rollout.waves[5].status == "pending"
        assert {rollout.targets[n].status for n in rollout.waves[5].targets} == {"pending"}
        await pilot.press("a")
        # ...and its manual gate after it.
        await until(pilot, state_is(console, "awaiting_approval"))
        assert console.rollout.current_wave == 5
        await pilot.press("a")
        await until(pilot, lambda: console.rollout.current_wave == 6)
        assert console.rollout.waves[5].status == "approved"


async def test_r_rolls_the_wave_back_after_confirming(make_console: MakeConsole) -> None:
    console = make_console()
    async with running(console) as pilot:
        await start_rollout(pilot, console)
        await until(pilot, state_is(console, "halted"))
        await pilot.press("r")
        await until(pilot, lambda: isinstance(console.app.screen, ConfirmScreen))
        await pilot.press("y")
        rollout = console.rollout
        await until(pilot, lambda: rollout.waves[2].status == "rolled_back")
        dev = [rollout.targets[n] for n in rollout.waves[2].targets]
        assert {t.status for t in dev} == {"rolled_back"}
        assert {t.version for t in dev} == {"1.12.0"}
        assert rollout.waves[1].status == "passed"  # only the selected (current) wave


async def test_r_cancelled_does_nothing(make_console: MakeConsole) -> None:
    console = make_console()
    async with running(console) as pilot:
        await start_rollout(pilot, console)
        await until(pilot, state_is(console, "halted"))
        await pilot.press("r")
        await until(pilot, lambda: isinstance(console.app.screen, ConfirmScreen))
        await pilot.press("n")
        await pilot.pause(0.2)
        assert console.rollout.waves[2].status != "rolled_back"
        assert not any(e.action == "rollback" for e in events_of(console, OperatorAction))


async def test_shift_r_rolls_back_the_selected_target(make_console: MakeConsole) -> None:
    console = make_console()
    async with running(console) as pilot:
        await start_rollout(pilot, console)
        await until(pilot, state_is(console, "halted"))
        select(console, ("target", "dev-us-1"))
        await pilot.pause()
        await pilot.press("R")
        await until(pilot, lambda: isinstance(console.app.screen, ConfirmScreen))
        await pilot.press("y")
        rollout = console.rollout
        await until(pilot, lambda: rollout.targets["dev-us-1"].status == "rolled_back")
        assert rollout.targets["dev-us-1"].version == "1.12.0"
        assert rollout.targets["dev-eu-1"].status == "ok"


async def test_t_retries_the_selected_failed_target(make_console: MakeConsole, estate_path) -> None:
    estate_with(estate_path, 'fail_targets = ["eph-103"]')
    console = make_console()
    async with running(console) as pilot:
        await start_rollout(pilot, console)
        await until(pilot, state_is(console, "halted"))
        rollout = console.rollout
        assert rollout.targets["eph-103"].status == "failed"  # 1 failed of 2 tolerated
        select(console, ("target", "eph-103"))
        await pilot.pause()
        await pilot.press("t")
        await until(
            pilot,
            lambda: any(e.action == "retry" for e in events_of(console, ApplyStarted)),
        )
        retries = [e for e in events_of(console, OperatorAction) if e.action == "retry"]
        assert retries and retries[0].target == "eph-103"


async def test_t_without_a_selected_target_says_so(make_console: MakeConsole) -> None:
    console = make_console()
    async with running(console) as pilot:
        await start_rollout(pilot, console)
        await until(pilot, state_is(console, "halted"))
        select(console, ("wave", 2))
        await pilot.press("t")
        await pilot.pause()
        assert any("select a failed target" in n.message for n in notifications(console.app))


async def test_x_aborts_after_confirming(make_console: MakeConsole) -> None:
    console = make_console(hold=True)
    async with running(console) as pilot:
        await start_rollout(pilot, console)
        await until(pilot, state_is(console, "running"))
        await pilot.press("x")
        await until(pilot, lambda: isinstance(console.app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: console.rollout.outcome is not None)
        outcome = console.rollout.outcome
        assert outcome is not None and outcome.outcome == "aborted"
        assert {t.status for n, t in console.rollout.targets.items() if n.startswith("eph")} == {
            "aborted"
        }


async def test_b_refuses_without_a_reason(make_console: MakeConsole) -> None:
    console = make_console()
    async with running(console) as pilot:
        await start_rollout(pilot, console)
        await until(pilot, state_is(console, "halted"))
        await pilot.press("b")
        await until(pilot, lambda: isinstance(console.app.screen, ReasonScreen))
        await pilot.press("enter")  # no reason typed
        await pilot.pause()
        assert isinstance(console.app.screen, ReasonScreen)
        assert "reason is required" in str(console.app.screen.query_one("#reason-error").render())
        assert console.rollout.state == "halted"
        await pilot.press("escape")
        await pilot.pause()
        assert not any(e.action == "bypass" for e in events_of(console, OperatorAction))


async def test_b_with_a_reason_bypasses_the_gate(make_console: MakeConsole) -> None:
    console = make_console()
    async with running(console) as pilot:
        await start_rollout(pilot, console)
        await until(pilot, state_is(console, "halted"))
        await pilot.press("b")
        await until(pilot, lambda: isinstance(console.app.screen, ReasonScreen))
        await pilot.press(*"CVE-2027-1 hotfix")
        await pilot.press("enter")
        await until(
            pilot,
            lambda: (console.rollout.current_wave or 0) > 2,
        )
        bypass = [e for e in events_of(console, OperatorAction) if e.action == "bypass"]
        assert bypass and bypass[0].reason == "CVE-2027-1 hotfix"


async def test_d_shows_and_copies_the_dashboard_link(make_console: MakeConsole) -> None:
    console = make_console()
    async with running(console) as pilot:
        select(console, ("target", "dev-eu-1"))
        await pilot.press("d")
        await pilot.pause()
        url = "https://grafana.example/d/pg?var-env=dev-eu-1"
        assert console.app.clipboard == url
        assert any(url in n.message for n in notifications(console.app))


async def test_slash_filters_the_tree(make_console: MakeConsole) -> None:
    console = make_console()
    async with running(console) as pilot:
        await pilot.press("slash")
        await pilot.press(*"dev-eu")
        await pilot.pause()
        tree = console.app.screen.query_one(EstateTree)
        targets = {ref[1] for ref in tree._by_ref if ref[0] == "target"}
        assert targets == {"dev-eu-1", "dev-eu-2"}
        await pilot.press("escape")
        await pilot.pause()
        assert len([r for r in tree._by_ref if r[0] == "target"]) == 36


async def test_selecting_a_target_focuses_metrics_and_log(make_console: MakeConsole) -> None:
    console = make_console()
    async with running(console) as pilot:
        await start_rollout(pilot, console)
        await until(pilot, state_is(console, "halted"))
        screen = console.app.screen

        def titles() -> tuple[str, str]:
            return (
                str(screen.query_one("#metrics").border_title),
                str(screen.query_one("#log").border_title),
            )

        select(console, ("target", "dev-ap-1"))
        await until(pilot, lambda: titles() == ("metrics · dev-ap-1", "output · dev-ap-1"))
        select(console, ("wave", 1))
        await until(pilot, lambda: titles() == ("metrics · W1 ephemeral 1/1", "events"))


async def test_h_history_enter_shows_p_replays(make_console: MakeConsole) -> None:
    console = make_console()
    async with running(console) as pilot:
        await start_rollout(pilot, console)
        await until(pilot, state_is(console, "halted"))
        await pilot.press("h")
        await until(pilot, lambda: type(console.app.screen).__name__ == "HistoryScreen")
        assert console.app.screen.query_one("#history-table", DataTable).row_count == 1
        await pilot.press("enter")
        await until(pilot, lambda: type(console.app.screen).__name__ == "TextScreen")
        assert "wave 2" in "\n".join(screen_as(console.app, TextScreen).lines)
        await pilot.press("escape")
        await pilot.press("p")
        await until(pilot, lambda: type(console.app.screen).__name__ == "ReplayScreen")
        await pilot.press("a")  # an operator command, in a replay
        await pilot.pause()
        assert any("disabled" in n.message for n in notifications(console.app))
        assert console.rollout.state == "halted"  # the live rollout is untouched
        await pilot.press("escape", "escape")
        await until(pilot, lambda: type(console.app.screen).__name__ == "ConsoleScreen")


async def test_question_mark_lists_every_key(make_console: MakeConsole) -> None:
    from sluice.tui.app import SluiceApp
    from sluice.tui.keys import KEY_HELP
    from sluice.tui.screens.console import ConsoleScreen
    from sluice.tui.screens.history import HistoryScreen
    from sluice.tui.screens.replay import ReplayScreen

    console = make_console()
    async with running(console) as pilot:
        await pilot.press("question_mark")
        await until(pilot, lambda: type(console.app.screen).__name__ == "HelpScreen")
        shown = {k.id: k for k in screen_as(console.app, HelpScreen).shown}
        every = [
            b.id
            for cls in (SluiceApp, ConsoleScreen, HistoryScreen, ReplayScreen)
            for b in bindings_of(cls)
            if b.id
        ]
        for binding_id in every:
            assert binding_id in shown, binding_id
            assert shown[binding_id].description == KEY_HELP[binding_id]
        assert shown["rollout.pause"].key == "space"
        assert shown["rollout.rollback_target"].key == "R"
        await pilot.press("escape")
        await until(pilot, lambda: type(console.app.screen).__name__ == "ConsoleScreen")


async def test_q_quits_at_once_when_idle(make_console: MakeConsole) -> None:
    console = make_console()
    async with running(console) as pilot:
        await pilot.press("q")
        await pilot.pause()
    assert console.app.return_value == 0


async def test_q_asks_while_running_and_leaves_it_resumable(
    make_console: MakeConsole, estate_path
) -> None:
    console = make_console(hold=True)
    async with running(console) as pilot:
        await start_rollout(pilot, console)
        await until(pilot, state_is(console, "running"))
        rollout_id = console.rollout.rollout_id
        await pilot.press("q")
        await until(pilot, lambda: isinstance(console.app.screen, ConfirmScreen))
        assert "resumable" in screen_as(console.app, ConfirmScreen).body
        await pilot.press("y")
        await pilot.pause()
    assert console.app.return_value == 4
    assert "resumable" in (console.app.farewell or "")
    console.driver.session.close()
    # A new console on the same estate offers to resume it.
    again = make_console(offer_resume=True)
    async with running(again) as pilot:
        await until(pilot, lambda: isinstance(again.app.screen, ConfirmScreen))
        assert f"#{rollout_id}" in screen_as(again.app, ConfirmScreen).body
        await pilot.press("y")
        await until(pilot, lambda: again.driver.rollout is not None)
        assert again.rollout.rollout_id == rollout_id
        assert again.rollout.resumed
        await until(pilot, state_is(again, "halted"))


async def test_n_after_a_halt_suggests_the_fix_and_supersedes(make_console: MakeConsole) -> None:
    from textual.widgets import Select

    console = make_console()
    async with running(console) as pilot:
        await start_rollout(pilot, console, "2.0.0")
        await until(pilot, state_is(console, "halted"))
        first = console.rollout
        await pilot.press("n")
        await until(pilot, lambda: isinstance(console.app.screen, NewRolloutScreen))
        screen = console.app.screen
        assert screen.query_one("#version", Select).value == "2.0.1"
        assert "starting this one stops it (recorded as superseded)" in str(
            screen.query_one("#plan-warning").render()
        )
        await pilot.press("enter")  # enter opens the version picker; it never starts a rollout
        await pilot.press("escape")
        assert console.driver.rollout is first
        await pilot.press("s")
        await until(pilot, lambda: console.driver.rollout is not first)
        await until(pilot, state_is(console, "awaiting_entry"))  # production needs approval
        assert first.outcome is not None and first.outcome.outcome == "superseded"
        assert console.rollout.plan.version == "2.0.1"
        from sluice.engine.app.outcomes import outcome_text

        records = console.driver.session.history.rollouts()
        old = next(r for r in records if r.id == first.rollout_id)
        assert old.outcome == "superseded"
        assert outcome_text(old, records) == f"superseded by #{console.rollout.rollout_id}"
