"""Pilot tests of what makes ``m`` and ``enter`` fast at 1,000 targets (bench/bench_console.py):
footers rebuilt only when their keys change, the target detail shown once with history's part
(read ahead, or read before it is shown), the hidden rollout view repainted when shown again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.app import App, ComposeResult
from textual.widgets._footer import FooterKey
from tui_support import Console, caught_up, running, start_rollout, state_is, until

from sluice.tui.app import binding_scopes
from sluice.tui.keymap import read_keys
from sluice.tui.screens.matrix import MatrixScreen
from sluice.tui.screens.target_detail import TargetDetailScreen
from sluice.tui.widgets.estate_tree import EstateTree
from sluice.tui.widgets.keys_footer import KeysFooter
from sluice.tui.widgets.output_log import OutputLog

pytestmark = pytest.mark.timeout(90)


def _footer(console: Console) -> KeysFooter:
    return console.app.screen.query_one(KeysFooter)


def _settled(footer: KeysFooter) -> bool:
    return footer.shown is not None and not footer.pending


async def _select(pilot, console: Console, target: str) -> None:  # type: ignore[no-untyped-def]
    tree = console.app.screen.query_one(EstateTree)
    tree.move_cursor(tree._by_ref[("target", target)])
    await pilot.pause()


async def _switch(pilot, console: Console, key: str, screen: type) -> None:  # type: ignore[no-untyped-def]
    await pilot.press(key)
    await until(pilot, lambda: isinstance(console.app.screen, screen))
    await until(pilot, lambda: _settled(_footer(console)))


async def test_footers_are_rebuilt_only_when_their_keys_change(make_console) -> None:
    console = make_console()
    async with running(console) as pilot:
        console_footer = _footer(console)
        await until(pilot, lambda: _settled(console_footer))
        await _switch(pilot, console, "m", MatrixScreen)
        matrix_footer = _footer(console)
        built = (console_footer.rebuilds, matrix_footer.rebuilds)
        for _ in range(3):
            await _switch(pilot, console, "escape", type(console.app.console_screen))
            await _switch(pilot, console, "m", MatrixScreen)
        assert (console_footer.rebuilds, matrix_footer.rebuilds) == built
        shown = {k.key for k in matrix_footer.query(FooterKey)}
        assert {"escape", "slash", "enter"} <= shown  # the matrix's own keys, still shown


async def test_the_footer_shows_a_remapped_key(make_console, tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    path.write_text('"rollout.pause" = "p"\n')
    console = make_console(keys=read_keys(path, binding_scopes()))
    async with running(console) as pilot:
        footer = _footer(console)
        await until(pilot, lambda: _settled(footer))
        keys = {k.description: k.key for k in footer.query(FooterKey)}
        assert keys["Pause"] == "p"


async def test_enter_shows_the_detail_once_with_what_history_says(
    make_console, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first paint of a target's detail already has history's part (before, the screen was
    drawn with the estate file's part and again a frame later with history's)."""
    first: dict[str, bool] = {}
    paint = TargetDetailScreen.paint

    async def recording(self: TargetDetailScreen) -> None:
        first.setdefault(self.target, self.loaded)
        await paint(self)

    monkeypatch.setattr(TargetDetailScreen, "paint", recording)
    console = make_console()
    async with running(console) as pilot:
        await start_rollout(pilot, console, "2.0.0")
        await until(pilot, state_is(console, "halted"))
        await until(pilot, lambda: caught_up(console))
        for target in ("dev-eu-1", "dev-eu-2"):  # the first detail, and the reused screen
            await _select(pilot, console, target)
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(console.app.screen, TargetDetailScreen))
            screen = console.app.screen
            assert screen.target == target and screen.loaded
            assert [r.version for r in screen.detail.ledger] == ["2.0.0"]
            await pilot.press("escape")
            await until(pilot, lambda: not isinstance(console.app.screen, TargetDetailScreen))
    assert first == {"dev-eu-1": True, "dev-eu-2": True}


async def test_the_selected_targets_detail_is_read_ahead(make_console) -> None:
    console = make_console()
    async with running(console) as pilot:
        await _select(pilot, console, "dev-eu-1")
        ahead = console.app.details.shared("dev-eu-1").ahead
        await until(pilot, lambda: ahead.fresh("dev-eu-1", None, live=False) is not None)
        assert ahead.reads == 1
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(console.app.screen, TargetDetailScreen))
        screen = console.app.screen
        assert screen.loaded and screen.detail.name == "dev-eu-1"
        assert ahead.reads == 1  # shown from the read ahead: nothing read at the key


async def test_the_console_hidden_under_the_matrix_is_repainted_when_shown_again(
    make_console,
) -> None:
    console = make_console()
    async with running(console) as pilot:
        await start_rollout(pilot, console, "2.0.0")
        await pilot.press("m")
        await until(pilot, lambda: isinstance(console.app.screen, MatrixScreen))
        # The rollout goes on underneath until it halts: nothing new comes after that.
        await until(pilot, lambda: console.driver.rollout.state == "halted")
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(console.app.screen, MatrixScreen))
        await until(pilot, lambda: caught_up(console))
        assert console.app.model.state == "halted"


class _LogApp(App[None]):
    def compose(self) -> ComposeResult:
        yield OutputLog()


async def test_the_output_log_knows_its_width_as_its_lines_are_written() -> None:
    app = _LogApp()
    async with app.run_test(size=(40, 10)) as pilot:
        log = app.query_one(OutputLog)
        lines: list[Any] = ["short", "x" * 120, "mid" * 10]
        log.write_lines(lines)
        # At once, not after a thread measured them (a second layout, a frame later).
        assert log.virtual_size.width == 120
        await pilot.pause()
        assert log.virtual_size.width == 120
