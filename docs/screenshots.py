"""Regenerate the README's screenshots: the sample rollout halting at the dev gate (console),
dev-eu-1's detail (``-detail``) and the estate matrix (``-matrix``).

Run: ``.venv/bin/python docs/screenshots.py [--out docs/screenshot.svg] [--time-scale 1]``

It opens the console on a scratch copy of ``sample_estate.toml`` (so no history is touched),
starts ``postgres-operator@2.0.0`` as a user would, waits for the dev gate to halt on the p99
latency regression, and saves what the screen shows as SVG (``App.save_screenshot``).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from sluice.engine.model.estate import load_estate
from sluice.engine.support.clock import Clock
from sluice.tui.app import SluiceApp
from sluice.tui.driver import RolloutDriver, open_session
from sluice.tui.widgets.estate_tree import EstateTree

ROOT = Path(__file__).resolve().parent.parent


async def capture(out: Path, time_scale: float, version: str, theme: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        estate_path = Path(tmp) / "sample_estate.toml"
        shutil.copy(ROOT / "sample_estate.toml", estate_path)
        session = open_session(load_estate(estate_path))
        driver = RolloutDriver(session, Clock(time_scale))
        app = SluiceApp(driver, theme=theme, offer_resume=False)
        try:
            async with app.run_test(size=(120, 40)) as pilot:
                await pilot.pause()
                app.console_screen.start(driver.plan("postgres-operator", version))
                deadline = time.monotonic() + 600
                while driver.rollout is None or driver.rollout.state not in (
                    "halted",
                    "awaiting_approval",
                ):
                    if time.monotonic() > deadline:
                        raise TimeoutError("the rollout never stopped at a gate")
                    await pilot.pause(0.2)
                await pilot.pause(0.5)
                app.clear_notifications()
                await pilot.pause(0.2)
                app.save_screenshot(out.name, str(out.parent))
                await _detail_and_matrix(app, pilot, out)
        finally:
            session.close()


async def _detail_and_matrix(app: SluiceApp, pilot: Any, out: Path) -> None:
    """``enter`` on dev-eu-1 (its p99 chart over the limit), then ``m`` (the matrix)."""
    tree = app.screen.query_one(EstateTree)
    tree.move_cursor(tree._by_ref[("target", "dev-eu-1")])
    await pilot.pause(0.2)
    await pilot.press("enter")
    await _until(pilot, lambda: getattr(app.screen, "loaded", False))  # its history is read
    await pilot.pause(0.5)
    app.clear_notifications()
    await pilot.pause(0.2)
    app.save_screenshot(f"{out.stem}-detail.svg", str(out.parent))
    await pilot.press("escape")
    await pilot.pause(0.3)
    await pilot.press("m")
    await _until(pilot, lambda: type(app.screen).__name__ == "MatrixScreen")
    await pilot.pause(0.5)
    app.clear_notifications()
    await pilot.pause(0.2)
    app.save_screenshot(f"{out.stem}-matrix.svg", str(out.parent))


async def _until(pilot: Any, predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the screen never showed")
        await pilot.pause(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.svg")
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--version", default="2.0.0")
    parser.add_argument("--theme")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    asyncio.run(capture(args.out, args.time_scale, args.version, args.theme))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
