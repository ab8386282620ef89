"""Helpers for the console's pilot, snapshot and terminal tests (fixtures: conftest.py).

A uniquely named module (not ``conftest``) so ``tests/integration/conftest.py`` never shadows it.
"""

from __future__ import annotations

import os

os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")  # before textual is imported

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from textual.app import App
from textual.binding import Binding
from textual.dom import DOMNode
from textual.notifications import Notification
from textual.pilot import Pilot
from textual.screen import Screen

from sluice.engine.executors.base import ApplyResult, create_executor
from sluice.engine.rollout.orchestrator import Rollout
from sluice.engine.support.clock import Clock
from sluice.tui.app import SluiceApp
from sluice.tui.driver import RolloutDriver

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_estate.toml"
#: 2027-01-15 08:00:00 UTC: where the frozen clock stands.
FROZEN_AT = 1_800_000_000.0
SIZE = (120, 40)

#: The ``make_console`` fixture: ``make_console(hold=False, path=None, executor_factory=None,
#: **app_kwargs)`` → a :class:`Console` (conftest.py).
MakeConsole = Callable[..., "Console"]
#: What a snapshot test runs before it takes the picture (``snap_compare(run_before=...)``).
RunBefore = Callable[[Pilot], Awaitable[None]]


class StepTime:
    """Event time that advances a fixed step per event: the same on every run."""

    def __init__(self, start: float = FROZEN_AT, step: float = 0.25):
        self.start, self.step = start, step
        self.reset()

    def reset(self) -> None:
        self.value = self.start - self.step

    def tick(self) -> float:
        self.value += self.step
        return self.value


STEPS = StepTime()


class FrozenClock(Clock):
    """Engine timers take no time; ``now()`` is the time of the latest event."""

    def __init__(self) -> None:
        super().__init__(1.0)

    def scaled(self, seconds: float) -> float:
        return 0.0

    def now(self) -> float:
        return max(STEPS.value, FROZEN_AT)


def estate_with(path: Path, extra_executor_settings: str) -> Path:
    """Add settings to the sample's ``preview`` executor (e.g. ``fail_targets = [...]``)."""
    lines = path.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("failure_rate = 0.05"))
    lines.insert(at + 1, extra_executor_settings)
    path.write_text("\n".join(lines) + "\n")
    return path


class HeldExecutor:
    """Applies that wait for the test to release them (so a rollout stays mid-wave)."""

    def __init__(self, release: asyncio.Event, spec: Any, estate: Any, clock: Any, res: Any):
        self.release = release
        self.inner = create_executor(spec, estate, clock, res)

    def describe(self, job: Any) -> str:
        return self.inner.describe(job)

    async def apply(self, job: Any, output: Any) -> ApplyResult:
        output("stdout", f"{job.target}: applying {job.version} (held by the test)")
        await self.release.wait()
        return await self.inner.apply(job, output)

    async def close(self) -> None:
        await self.inner.close()


@dataclass
class Console:
    app: SluiceApp
    driver: RolloutDriver
    clock: FrozenClock
    release: asyncio.Event

    @property
    def rollout(self) -> Rollout:
        """The rollout the console drives (the test has started one)."""
        rollout = self.driver.rollout
        assert rollout is not None, "no rollout has started"
        return rollout


async def until(pilot: Pilot, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait (letting the app run) until ``predicate()``; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {predicate.__doc__ or predicate}")
        await pilot.pause(0.02)
    await pilot.pause()


async def start_rollout(pilot: Pilot, console: Console, version: str = "2.0.0") -> None:
    """``n``, pick ``version``, ``s``: as a user would."""
    await pilot.press("n")
    await until(pilot, lambda: type(console.app.screen).__name__ == "NewRolloutScreen")
    from textual.widgets import Select

    console.app.screen.query_one("#version", Select).value = version
    await pilot.pause()
    await pilot.press("s")
    await until(pilot, lambda: console.driver.rollout is not None)


def state_is(console: Console, *states: str) -> Callable[[], bool]:
    def check() -> bool:
        r = console.driver.rollout
        return r is not None and r.state in states

    check.__doc__ = f"rollout state in {states}"
    return check


@asynccontextmanager
async def running(console: Console) -> AsyncIterator[Pilot]:
    async with console.app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        yield pilot


def caught_up(console: Console) -> bool:
    """The screen's view has folded in every event so far and repainted."""
    from sluice.tui.widgets.rollout_view import RolloutView

    views = list(console.app.screen.query(RolloutView))
    if not views:
        return True
    view = views[0]
    rollout = console.driver.rollout
    if view.mode == "live" and rollout is not None and view.model.state != rollout.state:
        return False
    return not view._pending and not view.model.dirty


def notifications(app: App[Any]) -> list[Notification]:
    """The notifications ``app`` shows now, oldest first.

    Textual keeps them in the private ``App._notifications`` and offers no public reader: this
    is the one place the tests touch it (change it here if Textual moves it).
    """
    return list(app._notifications)


def bindings_of(cls: type[DOMNode]) -> list[Binding]:
    """``cls.BINDINGS`` as :class:`Binding` objects (sluice declares every key with one, an id
    and a description — never as a bare tuple)."""
    found = [b for b in cls.BINDINGS if isinstance(b, Binding)]
    assert len(found) == len(cls.BINDINGS), f"{cls.__name__} declares a binding as a tuple"
    return found


S = TypeVar("S", bound=Screen[Any])


def screen_as(app: App[Any], cls: type[S]) -> S:
    """The screen ``app`` shows, which the test expects to be a ``cls``."""
    screen = app.screen
    assert isinstance(screen, cls), f"the screen is {type(screen).__name__}, not {cls.__name__}"
    return screen


def save_sample_drift(estate_path: Path) -> None:
    """What `sluice drift` would save for two targets of the sample (drift.json beside history)."""
    from sluice.engine.app.iac import DriftRow, save_drift
    from sluice.engine.model.estate import load_estate

    save_drift(
        load_estate(estate_path),
        [
            DriftRow("dev-eu-2", "postgres-operator", "1.12.0", "drifted", "1 to change", "1.12.0"),
            DriftRow(
                "dev-us-1", "pgbouncer", "1.21.0", "version_mismatch", "state 1.22.1", "1.22.1"
            ),
            DriftRow("dev-us-2", "postgres-operator", "1.12.0", "in_sync", "", "1.12.0"),
        ],
        0.0,
    )
