"""Pilot test: the target detail shows a finished apply's whole output from its spool file, also
after the console was closed and opened again (real local applies, real spool files)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Log
from tui_support import Console, running, start_rollout, until

from sluice.tui.screens.target_detail import TargetDetailScreen
from sluice.tui.widgets.estate_tree import EstateTree

pytestmark = pytest.mark.timeout(90)

#: 600 lines on stdout, one on stderr: far more than history's head and tail of an apply.
ESTATE = """\
[estate]
name = "spooled-output"
history = ".sluice/history.db"

[[channels]]
name = "dev"
max_parallel = 2
max_failures = 0

[executors.sh]
kind = "local"
apply = "seq 1 600; echo applied {version} >&2"

[modules.op]
versions = ["1.0", "2.0"]
initial = "1.0"

[targets.web-1]
channel = "dev"
executor = "sh"
"""


def _detail_loaded(console: Console) -> bool:
    screen = console.app.screen
    return isinstance(screen, TargetDetailScreen) and screen.loaded


async def _open_detail(pilot, console: Console, target: str) -> TargetDetailScreen:  # type: ignore[no-untyped-def]
    tree = console.app.screen.query_one(EstateTree)
    tree.move_cursor(tree._by_ref[("target", target)])
    await pilot.pause()
    await pilot.press("enter")
    await until(pilot, lambda: _detail_loaded(console))
    screen = console.app.screen
    assert isinstance(screen, TargetDetailScreen)
    return screen


async def test_detail_shows_the_whole_spooled_output_after_a_restart(
    tmp_path: Path, make_console
) -> None:
    path = tmp_path / "spooled.toml"
    path.write_text(ESTATE)
    first = make_console(path=path)
    async with running(first) as pilot:
        await start_rollout(pilot, first, "2.0")
        await until(pilot, lambda: first.driver.rollout.outcome is not None)  # type: ignore[union-attr]
        rollout_id = first.driver.rollout.rollout_id  # type: ignore[union-attr]
        screen = await _open_detail(pilot, first, "web-1")
        await until(pilot, lambda: "all of it" in str(screen.query_one(Log).border_title))
    first.driver.session.close()  # the console is gone: its lease with it

    spools = list((tmp_path / ".sluice" / "applies").rglob("web-1.*.log"))
    assert spools, "the local executor spooled the apply"
    again = make_console(path=path)
    async with running(again) as pilot:
        screen = await _open_detail(pilot, again, "web-1")
        log = screen.query_one("#detail-output", Log)
        await until(pilot, lambda: len(log.lines) > 600)
        lines = list(log.lines)
        # Every line, from the first to the last; stderr after its heading (history keeps
        # only a head and a tail: the middle comes from the spool file).
        assert lines[:3] == ["1", "2", "3"]
        assert "300" in lines and lines[599] == "600"
        assert lines[600:] == ["── stderr", "applied 2.0"]
        title = str(log.border_title)
        assert f"#{rollout_id} apply 1.0 → 2.0 · ok" in title and "602 lines, all of it" in title
