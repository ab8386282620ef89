"""Pilot tests: target detail (enter), estate matrix (m), the tree's module selector (v), and
the user's keys file (keys.toml), on the sample estate with a frozen engine."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from textual.widgets import Log
from tui_support import (
    Console,
    caught_up,
    running,
    save_sample_drift,
    start_rollout,
    state_is,
    until,
)

from sluice.tui.app import binding_scopes
from sluice.tui.keymap import read_keys
from sluice.tui.screens.help import HelpScreen
from sluice.tui.screens.matrix import MatrixScreen
from sluice.tui.screens.replay import ReplayScreen
from sluice.tui.screens.target_detail import TargetDetailScreen
from sluice.tui.widgets.estate_tree import EstateTree
from sluice.tui.widgets.ledger_table import LedgerTable
from sluice.tui.widgets.measure_chart import MeasureChart, chart_rows

pytestmark = pytest.mark.timeout(90)


def detail_loaded(console: Console) -> bool:
    """The target detail is up and shows what history says (its reads run on a thread)."""
    screen = console.app.screen
    return isinstance(screen, TargetDetailScreen) and screen.loaded


async def _select(pilot, console: Console, target: str) -> None:  # type: ignore[no-untyped-def]
    tree = console.app.screen.query_one(EstateTree)
    tree.move_cursor(tree._by_ref[("target", target)])
    await pilot.pause()


async def test_enter_on_a_target_opens_its_detail_with_chart_ledger_and_output(
    make_console,
) -> None:
    console = make_console()
    async with running(console) as pilot:
        await start_rollout(pilot, console, "2.0.0")
        await until(pilot, state_is(console, "halted"))
        await until(pilot, lambda: caught_up(console))
        await _select(pilot, console, "dev-eu-1")
        await pilot.press("enter")
        await until(pilot, lambda: detail_loaded(console))
        screen = console.app.screen
        assert screen.target == "dev-eu-1"
        detail = screen.detail
        assert detail.rollout is not None and detail.rollout.id == console.driver.rollout.rollout_id
        assert detail.modules == {"postgres-operator": "2.0.0", "pgbouncer": "1.21.0"}
        assert [(r.module, r.version, r.outcome) for r in detail.ledger] == [
            ("postgres-operator", "2.0.0", "in progress")
        ]
        charts = list(screen.query(MeasureChart))
        assert {c.series.check for c in charts} == {"p99_latency", "error_rate", "restarts"}
        p99 = next(c.series for c in charts if c.series.check == "p99_latency")
        assert "fail" in p99.outcomes  # 2.0.0 regresses p99 in dev: the chart shows why
        output = "\n".join(screen.query_one("#detail-output", Log).lines)
        assert "dev-eu-1" in output and "apply" in output
        assert screen.query_one("#detail-ledger", LedgerTable).row_count == 1
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(console.app.screen, TargetDetailScreen))


async def test_detail_copies_and_opens_the_dashboard(
    make_console, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = tmp_path / "opened.txt"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    opener = bin_dir / "xdg-open"  # the system's opener, as the console finds it on PATH
    opener.write_text(f'#!/bin/sh\nprintf "%s" "$1" > {opened}\n')
    opener.chmod(opener.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    console = make_console()
    async with running(console) as pilot:
        await _select(pilot, console, "eph-101")
        await pilot.press("enter")
        await until(pilot, lambda: detail_loaded(console))
        await pilot.press("d")
        assert console.app.clipboard == "https://grafana.example/d/pg?var-env=eph-101"
        await pilot.press("o")
        await until(pilot, opened.exists)
        await until(pilot, lambda: opened.read_text() == console.app.clipboard)


async def test_m_opens_the_matrix_filter_and_enter_detail(make_console) -> None:
    console = make_console()
    async with running(console) as pilot:
        await pilot.press("m")
        await until(pilot, lambda: isinstance(console.app.screen, MatrixScreen))
        screen = console.app.screen
        header = str(screen.query_one("#matrix-header").render())
        assert (
            "postgres-operator (newest 2.0.1)" in header and "pgbouncer (newest 1.22.1)" in header
        )
        assert len(screen.rows) == 36 + 4  # every target, and a heading per channel
        assert screen.selected_target() == "eph-101"
        await pilot.press("slash", *"dev-us")
        await until(pilot, lambda: len(screen.rows) == 1 + 2)
        assert "2 of 36 targets" in str(screen.query_one("#matrix-title").render())
        await pilot.press("enter")  # keeps the filter, back to the table
        await pilot.press("enter")  # the detail of the highlighted target
        await until(pilot, lambda: detail_loaded(console))
        assert console.app.screen.target == "dev-us-1"
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(console.app.screen, MatrixScreen))
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(console.app.screen, MatrixScreen))


async def test_matrix_colours_the_last_drift_result(make_console, estate_path: Path) -> None:
    save_sample_drift(estate_path)
    console = make_console()
    async with running(console) as pilot:
        await pilot.press("m")
        await until(pilot, lambda: isinstance(console.app.screen, MatrixScreen))
        screen = console.app.screen
        row = {name: i for i, name in enumerate(screen.rows)}
        cells = screen._matrix.cells
        assert [(c.state, c.note) for c in cells[row["dev-eu-2"]]] == [
            ("drifted", "drifted"),
            ("behind", ""),
        ]
        assert cells[row["dev-us-1"]][1].state == "drifted"
        assert cells[row["dev-us-1"]][1].note == "version mismatch"
        assert {c.state for c in cells[row["dev-us-2"]]} == {"behind"}  # in sync: not marked
        assert "≠ 1.12.0  drifted" in str(screen._row_text(row["dev-eu-2"]))
        legend = str(screen.query_one("#matrix-legend").render())
        assert "≠ drifted 2 " in legend and "counts of target·module cells" in legend


async def test_matrix_marks_the_running_rollout_and_what_is_behind(make_console) -> None:
    console = make_console(hold=True)
    async with running(console) as pilot:
        await start_rollout(pilot, console, "2.0.0")
        await until(pilot, lambda: caught_up(console))
        await pilot.press("m")
        await until(pilot, lambda: isinstance(console.app.screen, MatrixScreen))
        screen = console.app.screen
        cells = screen.running()
        assert cells[("postgres-operator", "eph-101")] == "applying"
        legend = str(screen.query_one("#matrix-legend").render())
        assert "● in the running rollout 36 " in legend  # every postgres-operator cell
        console.release.set()


async def test_v_switches_the_module_the_tree_shows(make_console) -> None:
    console = make_console()
    async with running(console) as pilot:
        pane = console.app.screen.query_one("#tree-pane")
        assert pane.border_title == "estate · postgres-operator"
        await pilot.press("v")
        await until(pilot, lambda: pane.border_title == "estate · pgbouncer")
        label = str(console.app.screen.query_one(EstateTree)._by_ref[("target", "eph-101")].label)
        assert "1.21.0" in label


async def test_enter_in_a_replay_opens_the_detail_of_that_rollout(make_console) -> None:
    console = make_console()
    async with running(console) as pilot:
        await start_rollout(pilot, console, "2.0.0")
        await until(pilot, state_is(console, "halted"))
        rollout_id = console.driver.rollout.rollout_id
        console.app.push_screen(
            ReplayScreen(
                console.driver.estate, console.driver.session.history, rollout_id, autoplay=False
            )
        )
        await until(pilot, lambda: isinstance(console.app.screen, ReplayScreen))
        await pilot.press("right")  # into wave 1
        await until(pilot, lambda: bool(console.app.screen.model.waves))
        await pilot.pause(0.2)
        await _select(pilot, console, "eph-102")
        await pilot.press("enter")
        await until(pilot, lambda: detail_loaded(console))
        assert console.app.screen.detail.rollout.id == rollout_id


async def test_t_in_history_opens_targets_with_that_rollouts_measurements(make_console) -> None:
    console = make_console()
    async with running(console) as pilot:
        await start_rollout(pilot, console, "2.0.0")
        await until(pilot, state_is(console, "halted"))
        rollout_id = console.driver.rollout.rollout_id
        await pilot.press("h")
        await until(pilot, lambda: type(console.app.screen).__name__ == "HistoryScreen")
        await pilot.press("t")
        await until(pilot, lambda: isinstance(console.app.screen, MatrixScreen))
        assert console.app.screen.rollout_id == rollout_id
        await pilot.press("down", "down", "down", "down", "down", "down", "down", "down", "down")
        assert console.app.screen.selected_target() == "dev-eu-1"
        await pilot.press("enter")
        await until(pilot, lambda: detail_loaded(console))
        assert console.app.screen.detail.rollout.id == rollout_id
        assert console.app.screen.detail.series  # dev-eu-1 was measured in that rollout


def test_chart_draws_the_limit_line_past_the_bars() -> None:
    from sluice.tui.estate_data import CheckSeries

    series = CheckSeries("p99", 2, [0.1, 0.4], ["pass", "fail"], [0.1, 0.1], maximum=0.25)
    rows = chart_rows(series, width=40, height=6)
    text = ["".join(part for part, _ in row) for row in rows]
    assert any("┈" in line for line in text)  # the 0.25 line
    roles = {role for row in rows for _, role in row}
    assert {"pass", "fail", "limit"} <= roles


# ---------------------------------------------------------------------- keys.toml


def _keys(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "keys.toml"
    path.write_text(text)
    return path


async def test_a_remapped_pause_key_pauses_and_help_and_footer_show_it(
    make_console, tmp_path: Path
) -> None:
    keys = read_keys(_keys(tmp_path, '"rollout.pause" = "p"\n'), binding_scopes())
    assert keys.problems == [] and keys.keymap == {"rollout.pause": "p"}
    console = make_console(hold=True, keys=keys)
    async with running(console) as pilot:
        await start_rollout(pilot, console, "2.0.0")
        await pilot.press("space")  # the default key no longer pauses
        await pilot.pause(0.1)
        assert not console.driver.rollout.paused
        await pilot.press("p")
        await until(pilot, lambda: console.driver.rollout.paused)
        footer = {b.binding.id: b.binding.key for b in console.app.screen.active_bindings.values()}
        assert footer["rollout.pause"] == "p"
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(console.app.screen, HelpScreen))
        shown = {k.id: k.key for k in console.app.screen.shown}
        assert shown["rollout.pause"] == "p"
        console.release.set()


def test_a_bad_keys_file_names_each_problem_with_its_line(tmp_path: Path) -> None:
    path = _keys(
        tmp_path,
        '# my keys\n"rollout.pause" = "p"\n"rollout.pauze" = "z"\n"rollout.advance" = "p"\n'
        '"app.help" = 3\n',
    )
    keys = read_keys(path, binding_scopes())
    assert keys.keymap == {}  # nothing applied: the defaults stay
    assert keys.problems == [
        f"{path}:3: \"rollout.pauze\": unknown binding id (did you mean 'rollout.pause'?)",
        f'{path}:5: "app.help": must be a key name like "p" or "ctrl+p"',
        f"{path}:2: \"rollout.pause\": key 'p' is bound twice on the console: also to "
        '"rollout.advance"',
    ]


def test_a_keys_file_that_is_not_toml_says_where(tmp_path: Path) -> None:
    path = _keys(tmp_path, '"rollout.pause" = "p"\n"broken = \n')
    keys = read_keys(path, binding_scopes())
    assert len(keys.problems) == 1 and keys.problems[0].startswith(f"{path}:2: not valid TOML")


async def test_a_bad_keys_file_still_opens_the_console_with_default_keys(
    make_console, tmp_path: Path
) -> None:
    keys = read_keys(_keys(tmp_path, '"rollout.nope" = "p"\n'), binding_scopes())
    console = make_console(hold=True, keys=keys)
    async with running(console) as pilot:
        notes = [n.message for n in console.app._notifications]
        assert any(f"{tmp_path / 'keys.toml'}:1:" in m for m in notes)
        await start_rollout(pilot, console, "2.0.0")
        await pilot.press("space")  # the default
        await until(pilot, lambda: console.driver.rollout.paused)
        console.release.set()


def test_chart_of_a_control_baseline_draws_the_control_median() -> None:
    from sluice.tui.estate_data import CheckSeries
    from sluice.tui.widgets.measure_chart import legend

    series = CheckSeries(
        "p99", 3, [0.2, 0.3, 0.5], ["pass", "pass", "fail"], [0.1, 0.12, 0.14],
        baseline_kind="control", max_increase=2.0,
    )  # fmt: skip
    assert series.control_median() == 0.12
    assert series.limit_at(2) == pytest.approx(0.42)  # 0.14 × (1 + 200%)
    text = str(legend(series))
    assert "╌ control median 0.12" in text and "┈ limit 0.42" in text
    roles = {role for row in chart_rows(series, width=40, height=8) for _, role in row}
    assert {"control", "limit", "fail"} <= roles
