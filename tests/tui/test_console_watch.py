"""A second console on a driven estate: refused with the holder's name, and it may watch."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from tui_support import ROOT, FrozenClock, notifications, until

from sluice.engine.model.estate import load_estate
from sluice.engine.rollout.state import ExitCode
from sluice.tui.app import SluiceApp, run_console
from sluice.tui.driver import LeaseHeld, RolloutDriver, open_session
from sluice.tui.widgets.header import RolloutHeader

pytestmark = pytest.mark.timeout(120)


def _driven_elsewhere(estate_path: Path) -> subprocess.Popen[str]:
    """A headless ``sluice run`` in another process: it holds the estate's lease."""
    command = [
        sys.executable, "-m", "sluice.cli", "run", str(estate_path), "postgres-operator@2.0.1",
        "--headless", "--time-scale", "0.1",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    estate = load_estate(estate_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            open_session(estate).close()
        except LeaseHeld:
            return process
        time.sleep(0.1)
    process.kill()
    raise AssertionError("the other process never took the lease")


def test_starting_a_rollout_on_a_driven_estate_exits_5(
    estate_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = _driven_elsewhere(estate_path)
    try:
        code = run_console(load_estate(estate_path), start=("postgres-operator", "2.0.1"))
        assert code == ExitCode.LOCKED
        assert "is driven by" in capsys.readouterr().err
    finally:
        other.kill()
        other.wait(10)


async def test_a_second_console_watches_read_only(estate_path: Path) -> None:
    other = _driven_elsewhere(estate_path)
    estate = load_estate(estate_path)
    try:
        with pytest.raises(LeaseHeld) as held:
            open_session(estate)
        session = open_session(estate, drive=False)
        driver = RolloutDriver(
            session, FrozenClock(), read_only=f"{held.value}: this console only watches"
        )
        app = SluiceApp(driver, offer_resume=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.model.rollout_id is not None, timeout=60)
            await until(
                pilot, lambda: any(t.status == "ok" for t in app.model.targets.values()), timeout=60
            )
            assert app.screen.query_one("#header", RolloutHeader).mode == "watch"
            await pilot.press("space")
            await pilot.pause()
            assert any("is driven by" in n.message for n in notifications(app))
            await pilot.press("n")
            await pilot.pause()
            assert type(app.screen).__name__ == "ConsoleScreen"  # no new-rollout modal
        session.close()
    finally:
        other.kill()
        other.wait(10)
