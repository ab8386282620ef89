"""Fixtures for the console's pilot, snapshot and terminal tests (helpers: tui_support.py).

Every test gets its own copy of the sample estate (so history and the lease live in a temp dir)
and a frozen engine: timers take no time, event timestamps advance a fixed step per event and
apply durations are zero — so what the screen says about time is the same on every run.
"""

from __future__ import annotations

import os

os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")  # before textual is imported

import asyncio
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tui_support import FROZEN_AT, SAMPLE, STEPS, Console, FrozenClock, HeldExecutor

from sluice.engine.model.estate import load_estate
from sluice.engine.rollout.events import EventBus
from sluice.engine.support.clock import Clock
from sluice.tui.app import SluiceApp
from sluice.tui.driver import RolloutDriver, open_session


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.delenv("NO_COLOR", raising=False)
    # The acting person is SLUICE_ACTOR or user@host: fixed, so no host name reaches a snapshot.
    monkeypatch.setenv("SLUICE_ACTOR", "root")


@pytest.fixture
def frozen_engine(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Deterministic engine time: events 0.25 s apart from FROZEN_AT, apply durations 0.

    The session options to open with: a frozen wall clock and an EventBus whose events are
    stamped by the step time; apply durations come from the (patched) Clock.
    """
    STEPS.reset()

    def bus(start_seq: int = 1) -> EventBus:
        return EventBus(start_seq=start_seq, clock=STEPS.tick)

    monkeypatch.setattr(Clock, "monotonic", staticmethod(lambda: 0.0))
    return {"wall": lambda: FROZEN_AT, "bus": bus}


@pytest.fixture
def estate_path(tmp_path: Path) -> Path:
    """A private copy of the sample estate (its history goes to tmp_path/.sluice)."""
    path = tmp_path / "sample_estate.toml"
    shutil.copy(SAMPLE, path)
    return path


@pytest.fixture
def make_console(
    estate_path: Path, frozen_engine: dict[str, Any]
) -> Iterator[Callable[..., Console]]:
    """Build a console on the private estate: ``make_console(hold=False, **app_kwargs)``
    (``executor_factory=`` gives the rollout other executors)."""
    sessions = []

    def make(
        *,
        path: Path | None = None,
        hold: bool = False,
        executor_factory: Callable[..., Any] | None = None,
        **kwargs: Any,
    ) -> Console:
        estate = load_estate(path or estate_path)
        session = open_session(estate, **frozen_engine)
        sessions.append(session)
        clock = FrozenClock()
        release = asyncio.Event()
        options = {}
        if hold:
            options["executor_factory"] = lambda *a: HeldExecutor(release, *a)
        if executor_factory is not None:
            options["executor_factory"] = executor_factory
        driver = RolloutDriver(session, clock, rollout_options=options)
        kwargs.setdefault("offer_resume", False)
        return Console(SluiceApp(driver, **kwargs), driver, clock, release)

    yield make
    for session in sessions:
        session.close()
