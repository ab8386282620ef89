"""Pilot tests of what the console draws while another screen covers it and when ``enter``
shows a target's detail again: the console beneath an opaque screen (the detail, the matrix)
repaints nothing of the screen above, beneath the transparent help it still does, and the
reused detail is drawn for the next target in one frame."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from textual.screen import Screen
from textual.widgets import Label
from tui_support import Console, running, until

from sluice.tui.screens.help import HelpScreen
from sluice.tui.screens.matrix import MatrixScreen
from sluice.tui.screens.target_detail import TargetDetailScreen
from sluice.tui.widgets.estate_tree import EstateTree

pytestmark = pytest.mark.timeout(90)

PANES = {"detail-title", "detail-runs", "detail-ledger", "detail-vars", "detail-charts"}
PANES |= {"detail-output"}


def _count(screen: Screen[Any], name: str) -> list[tuple[Any, ...]]:
    """Record the calls of ``screen``'s method ``name`` (their positional arguments)."""
    calls: list[tuple[Any, ...]] = []
    method: Callable[..., Any] = getattr(screen, name)

    def recorded(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return method(*args, **kwargs)

    setattr(screen, name, recorded)
    return calls


def _shows(detail: TargetDetailScreen, target: str) -> bool:
    return detail.loaded and detail.detail.name == target


def _frames(screen: Screen[Any]) -> list[set[str]]:
    """Record the frames ``screen`` draws: the ids of the widgets each redraws."""
    frames: list[set[str]] = []
    draw: Callable[[], None] = screen._compositor_refresh  # type: ignore[attr-defined]

    def recorded() -> None:
        frames.append({w.id or "" for w in screen._dirty_widgets})  # type: ignore[attr-defined]
        draw()

    screen._compositor_refresh = recorded  # type: ignore[method-assign]
    return frames


async def _change_beneath(pilot, console: Console, words: str) -> None:  # type: ignore[no-untyped-def]
    """Change a label of the console (beneath the top screen) and wait until the console has
    drawn it (its own frame: forwarded upwards or kept)."""
    beneath = console.app.console_screen
    frames = _count(beneath, "_compositor_refresh")
    beneath.query_one("#what", Label).update(words, layout=False)
    await until(pilot, lambda: len(frames) >= 1)


@pytest.mark.parametrize("key,top", [("enter", TargetDetailScreen), ("m", MatrixScreen)])
async def test_the_console_beneath_an_opaque_screen_repaints_nothing_of_it(
    make_console, key: str, top: type
) -> None:
    console = make_console()
    async with running(console) as pilot:
        if key == "enter":
            tree = console.app.console_screen.query_one(EstateTree)
            tree.move_cursor(tree._by_ref[("target", "dev-eu-1")])
            await pilot.pause()
        await pilot.press(key)
        await until(pilot, lambda: isinstance(console.app.screen, top))
        await pilot.pause()
        shown = console.app.screen
        asked = _count(shown, "refresh")
        await _change_beneath(pilot, console, "changed while covered")
        assert [args for args in asked if args] == []  # no region of the console's asked for
        assert console.app.console_screen.frames_kept >= 1  # type: ignore[attr-defined]
        await pilot.press("escape")
        await until(pilot, lambda: console.app.screen is console.app.console_screen)
        label = console.app.console_screen.query_one("#what", Label)
        assert "changed while covered" in str(label.render())


async def test_the_console_beneath_the_transparent_help_still_shows_through(
    make_console,
) -> None:
    console = make_console()
    async with running(console) as pilot:
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(console.app.screen, HelpScreen))
        await pilot.pause()
        help_screen = console.app.screen
        asked = _count(help_screen, "refresh")
        kept = getattr(console.app.console_screen, "frames_kept", 0)
        await _change_beneath(pilot, console, "changed beneath the help")
        assert [args for args in asked if args]  # the regions that changed beneath, redrawn
        assert getattr(console.app.console_screen, "frames_kept", 0) == kept


async def test_enter_draws_the_reused_detail_of_the_next_target_in_one_frame(
    make_console,
) -> None:
    console = make_console()
    async with running(console) as pilot:
        tree = console.app.console_screen.query_one(EstateTree)
        frames: list[set[str]] = []
        for target in ("dev-eu-1", "dev-eu-2"):
            tree.move_cursor(tree._by_ref[("target", target)])
            await pilot.pause()
            if target == "dev-eu-2":  # the screen shown again, for another target
                frames = _frames(console.app.details.shared(target))
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(console.app.screen, TargetDetailScreen))
            detail = console.app.screen
            assert isinstance(detail, TargetDetailScreen)
            await until(pilot, partial(_shows, detail, target))
            # A window to see a later frame in (it came a frame period after the first): no
            # rollout runs, nothing on the detail changes after it is shown.
            await pilot.pause(0.3)
            await pilot.press("escape")
            await until(pilot, lambda: console.app.screen is console.app.console_screen)
        # Drawn whole in its first frame (after a layout, the scrollbars may follow): no
        # pane of it drawn again — not by focus, nor by a pane's news after that frame.
        assert frames, "the detail was never drawn"
        assert [f & PANES for f in frames[1:]] == [set()] * (len(frames) - 1), frames
