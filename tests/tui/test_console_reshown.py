"""Pilot tests of the screens the console shows again and again (``m``, ``enter``): kept styles
(restyled only after a theme change), panes sized for each target shown, the ledger's table,
and the keys after switching back and forth."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
from textual.app import App, ComposeResult
from tui_support import Console, caught_up, running, start_rollout, state_is, until

from sluice.tui.screens.matrix import MatrixScreen
from sluice.tui.screens.target_detail import TargetDetailScreen
from sluice.tui.widgets.estate_tree import EstateTree
from sluice.tui.widgets.ledger_table import LedgerTable
from sluice.tui.widgets.matrix_grid import MatrixGrid
from sluice.tui.widgets.output_log import OutputLog

pytestmark = pytest.mark.timeout(90)


async def _press(pilot, console: Console, key: str, screen: type) -> None:  # type: ignore[no-untyped-def]
    await pilot.press(key)
    await until(pilot, lambda: isinstance(console.app.screen, screen))
    await pilot.pause()


async def _select(pilot, console: Console, target: str) -> None:  # type: ignore[no-untyped-def]
    tree = console.app.console_screen.query_one(EstateTree)
    tree.move_cursor(tree._by_ref[("target", target)])
    await pilot.pause()


async def test_the_matrix_shown_again_keeps_its_rows_cursor_and_styles(make_console) -> None:
    console = make_console()
    async with running(console) as pilot:
        back = type(console.app.console_screen)
        await _press(pilot, console, "m", MatrixScreen)
        matrix = console.app.screen
        assert isinstance(matrix, MatrixScreen)
        await pilot.press("down", "down")
        rows, cursor = list(matrix.rows), matrix.query_one(MatrixGrid).cursor
        await _press(pilot, console, "escape", back)
        await _press(pilot, console, "m", MatrixScreen)
        assert console.app.screen is matrix
        assert matrix.rows == rows and matrix.query_one(MatrixGrid).cursor == cursor
        assert matrix.restyles_skipped == 1  # nothing styles it differently: kept
        # Its keys still work: enter opens the row's target — in the console's one detail
        # screen, read before it is shown — and escape comes back to the matrix; twice.
        shown: list[str | None] = []
        for _ in range(2):
            target = matrix.selected_target()
            await _press(pilot, console, "enter", TargetDetailScreen)
            detail = console.app.screen
            assert isinstance(detail, TargetDetailScreen)
            assert detail.target == target and detail.loaded and detail.detail.name == target
            assert detail is console.app.details.shared(target)
            shown.append(target)
            await _press(pilot, console, "escape", MatrixScreen)
            assert console.app.screen is matrix
            await pilot.press("down")
        assert shown[0] != shown[1]
        await _press(pilot, console, "escape", back)


async def test_a_theme_changed_while_the_matrix_was_hidden_restyles_it(make_console) -> None:
    console = make_console()
    async with running(console) as pilot:
        back = type(console.app.console_screen)
        await _press(pilot, console, "m", MatrixScreen)
        matrix = console.app.screen
        dark = matrix.query_one(MatrixGrid).styles.background
        await _press(pilot, console, "escape", back)
        console.app.theme = "sluice-light"
        await pilot.pause()
        await _press(pilot, console, "m", MatrixScreen)
        assert console.app.screen is matrix
        assert matrix.restyles_skipped == 0
        light = matrix.query_one(MatrixGrid).styles.background
        assert light != dark  # the light theme's surface, not the dark one's kept


async def test_the_detail_shown_again_is_sized_and_filled_for_each_target(
    make_console, estate_path: Path
) -> None:
    """One detail screen shows one target after another: its vars pane grows for a target with
    more vars (a pane sized by its lines is laid out again only when their count changes), and
    the ledger and output are the shown target's."""
    text = estate_path.read_text()
    one = '[targets.dev-eu-2]\nchannel = "dev"\nexecutor = "fleet"\n'
    assert one in text
    text = text.replace(
        one + 'vars = { region = "eu-west-1", tier = "dev" }',
        one + 'vars = { region = "eu-west-1", tier = "dev", owner = "db-team", pager = "db" }',
    )
    estate_path.write_text(text)
    console = make_console()
    async with running(console) as pilot:
        back = type(console.app.console_screen)
        await start_rollout(pilot, console, "2.0.0")
        await until(pilot, state_is(console, "halted"))
        await until(pilot, lambda: caught_up(console))
        heights = {}
        for target in ("dev-eu-1", "dev-eu-2", "dev-eu-1"):
            await _select(pilot, console, target)
            await _press(pilot, console, "enter", TargetDetailScreen)
            screen = console.app.screen
            assert isinstance(screen, TargetDetailScreen)
            await until(pilot, partial(_shows, screen, target))
            await pilot.pause()
            heights[target] = screen.query_one("#detail-vars").size.height
            ledger = screen.query_one(LedgerTable)
            assert ledger.row_count == len(screen.detail.ledger) == 1
            assert "2.0.0" in ledger.render_line(1).text  # its one entry, under the header
            log = screen.query_one(OutputLog)
            assert any(target in line for line in log.lines)
            assert log.virtual_size.height == log.line_count
            await _press(pilot, console, "escape", back)
        assert heights["dev-eu-2"] == heights["dev-eu-1"] + 2  # two more vars, two more lines
        # The app's keys work again after all that switching: the matrix, then back.
        await _press(pilot, console, "m", MatrixScreen)
        await _press(pilot, console, "escape", back)
        assert console.app.console_screen.query_one(EstateTree).has_focus


class _LedgerApp(App[None]):
    def compose(self) -> ComposeResult:
        yield LedgerTable()


async def test_the_ledger_table_draws_a_header_over_its_rows_and_moves_its_cursor() -> None:
    app = _LedgerApp()
    async with app.run_test(size=(40, 6)) as pilot:
        table = app.query_one(LedgerTable)
        rows = [(f"01-0{i} 08:00", f"v{i}") for i in range(1, 9)]
        table.set_table(("when", "version"), rows)
        table.focus()
        await pilot.pause()
        assert table.row_count == 8 and table.virtual_size.height == 9  # the header's line too
        assert table.render_line(0).text.split() == ["when", "version"]
        assert table.render_line(1).text.split() == ["01-01", "08:00", "v1"]
        await pilot.press("end")
        assert table.cursor == 7
        # The last row is on screen, under the header (6 lines: the header and 5 rows).
        assert table.scroll_offset.y == 9 - 6
        assert table.render_line(5).text.split()[-1] == "v8"
        await pilot.press("home")
        assert table.cursor == 0 and table.scroll_offset.y == 0
        wide = [("01-01 08:00", "v" * 60)]
        table.set_table(("when", "version"), wide)
        await pilot.pause()
        await pilot.press("right", "right")
        await pilot.pause()
        assert table.scroll_offset.x > 0  # the header scrolls sideways with the rows
        assert table.render_line(0).text.startswith(" when"[table.scroll_offset.x :])
        table.set_table(("when", "version"), [])
        assert table.row_count == 0 and table.render_line(0).text.split() == ["when", "version"]


class _LogApp(App[None]):
    def compose(self) -> ComposeResult:
        yield OutputLog()


async def test_the_output_log_replaces_its_lines_sized_once_and_scrolled_to_their_end() -> None:
    app = _LogApp()
    async with app.run_test(size=(40, 10)) as pilot:
        log = app.query_one(OutputLog)
        log.write_lines([f"old line {i}" for i in range(30)])
        await pilot.pause()
        sizes = []
        log.watch(log, "virtual_size", lambda size: sizes.append(size), init=False)
        log.replace(["new", "y" * 90, *[f"new line {i}" for i in range(38)]])
        await pilot.pause()
        assert sizes == [log.virtual_size] and log.virtual_size == (90, 40)  # sized once
        assert log.lines[0] == "new" and log.line_count == 40
        assert log.scroll_offset.y == log.max_scroll_y > 0  # at the end, as written


def _shows(screen: TargetDetailScreen, target: str) -> bool:
    """Whether the detail screen has loaded ``target``'s detail."""
    return bool(screen.loaded and screen.detail.name == target)
