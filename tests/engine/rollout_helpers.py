"""Shared helpers for the rollout-engine tests: small estates built in code, rollouts on a
``Clock(0)`` (every engine timer zero), scripted executors and checks, and waiting on events.

Tests never sleep to synchronise: they await the first event matching a predicate, with a
deadline (:meth:`Events.first`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import fields
from pathlib import Path
from typing import Any

import tomli_w

from sluice.engine.checks.base import Reading
from sluice.engine.executors.base import ApplyResult, Executor, Job, OutputSink, create_executor
from sluice.engine.model.estate import Estate, parse_estate
from sluice.engine.model.plan import make_plan
from sluice.engine.model.template import Context
from sluice.engine.rollout.events import Event, StateChanged
from sluice.engine.rollout.options import RolloutOptions
from sluice.engine.rollout.orchestrator import Rollout
from sluice.engine.support.clock import Clock

MODULE = "op"
SIM = {"kind": "simulated", "duration": "0s"}


def channel(name: str, **settings: Any) -> dict[str, Any]:
    """A ``[[channels]]`` table; ``max_parallel`` defaults to 4, soak to zero."""
    return {"name": name, "max_parallel": 4, **settings}


def members(
    channel_name: str, count: int, *, executor: str = "sim", prefix: str = ""
) -> dict[str, dict[str, Any]]:
    """``count`` targets named ``PREFIX-1``… in ``channel_name``."""
    prefix = prefix or channel_name
    return {
        f"{prefix}-{i}": {"channel": channel_name, "executor": executor}
        for i in range(1, count + 1)
    }


def build_estate(
    tmp_path: Path,
    *,
    channels: list[dict[str, Any]],
    targets: dict[str, dict[str, Any]],
    executors: dict[str, dict[str, Any]] | None = None,
    checks: dict[str, dict[str, Any]] | None = None,
    simulation: dict[str, Any] | None = None,
) -> Estate:
    """Write an estate file into ``tmp_path`` (local commands run there) and parse it."""
    doc: dict[str, Any] = {
        "estate": {"name": "test"},
        "channels": channels,
        "executors": executors or {"sim": SIM},
        "modules": {MODULE: {"versions": ["1.0", "2.0"], "initial": "1.0"}},
        "targets": targets,
    }
    if checks:
        doc["checks"] = checks
    if simulation:
        doc["simulation"] = simulation
    text = tomli_w.dumps(doc)
    path = tmp_path / "estate.toml"
    path.write_text(text)
    return parse_estate(text, path)


def make_rollout(estate: Estate, *, clock: Clock | None = None, **kwargs: Any) -> Rollout:
    """A rollout of ``op@2.0``: headless policy and ``Clock(0)`` unless told otherwise.

    ``kwargs``: :class:`RolloutOptions` fields (``interactive=``, ``until_wave=``, …) and the
    rollout's own arguments (``executor_factory=``, ``check_factory=``, ``bus=``, …).
    """
    flags = {f.name for f in fields(RolloutOptions)}
    options = RolloutOptions(
        **{"interactive": False} | {k: kwargs.pop(k) for k in flags & set(kwargs)}
    )
    kwargs.setdefault("actor", "tester")
    plan = make_plan(estate, MODULE, "2.0")
    return Rollout(estate, plan, clock=clock or Clock(0), options=options, **kwargs)


class Events:
    """Records every event of a bus (a listener, so nothing is missed) and lets a test await one."""

    def __init__(self, rollout_or_bus: Any):
        bus = getattr(rollout_or_bus, "bus", rollout_or_bus)
        self.all: list[Event] = []
        self._waiters: list[tuple[Callable[[Event], bool], asyncio.Future[Event]]] = []
        bus.listen(self._on)

    def _on(self, event: Event) -> None:
        self.all.append(event)
        for predicate, future in list(self._waiters):
            if not future.done() and predicate(event):
                future.set_result(event)

    async def first(
        self, predicate: Callable[[Event], bool], timeout: float = 10.0, *, new: bool = False
    ) -> Event:
        """The first event (already seen, or, with ``new``, still to come) matching ``predicate``."""
        if not new:
            for event in self.all:
                if predicate(event):
                    return event
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        entry = (predicate, future)
        self._waiters.append(entry)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            tail = "\n  ".join(repr(e) for e in self.all[-15:])
            raise AssertionError(
                f"no matching event within {timeout} s; last events:\n  {tail}"
            ) from None
        finally:
            self._waiters.remove(entry)

    def of(self, cls: type[Event], **fields: Any) -> list[Any]:
        return [
            e
            for e in self.all
            if isinstance(e, cls) and all(getattr(e, k) == v for k, v in fields.items())
        ]


def is_state(state: str) -> Callable[[Event], bool]:
    return lambda e: isinstance(e, StateChanged) and e.state == state


def of_kind(cls: type[Event], **fields: Any) -> Callable[[Event], bool]:
    return lambda e: isinstance(e, cls) and all(getattr(e, k) == v for k, v in fields.items())


def start(rollout: Rollout) -> asyncio.Task[Any]:
    return asyncio.get_running_loop().create_task(rollout.run())


# ---------------------------------------------------------------------------------- executors


class CountingExecutor:
    """Wraps a real executor and measures how many of its applies are in flight at once."""

    def __init__(self, inner: Executor):
        self.inner = inner
        self.in_flight = 0
        self.peak = 0
        #: in-flight count just before each apply started
        self.at_start: list[int] = []

    def describe(self, job: Job) -> str:
        return self.inner.describe(job)

    async def apply(self, job: Job, output: OutputSink) -> ApplyResult:
        self.at_start.append(self.in_flight)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            return await self.inner.apply(job, output)
        finally:
            self.in_flight -= 1

    async def close(self) -> None:
        await self.inner.close()


def counting_factory() -> tuple[Callable[..., Executor], list[CountingExecutor]]:
    made: list[CountingExecutor] = []

    def factory(*args: Any) -> Executor:
        executor = CountingExecutor(create_executor(*args))
        made.append(executor)
        return executor

    return factory, made


class HeldExecutor:
    """Applies that wait until the test releases them (``release``), or fail when told to."""

    def __init__(self, fail: Iterable[str] = ()):
        self.fail = set(fail)
        self.gate = asyncio.Event()
        self.started: list[str] = []

    def describe(self, job: Job) -> str:
        return f"held {job.action} {job.target}"

    async def apply(self, job: Job, output: OutputSink) -> ApplyResult:
        self.started.append(job.target)
        await self.gate.wait()
        if job.target in self.fail:
            return ApplyResult(False, "told to fail", 1)
        return ApplyResult(True, "", 0)

    def release(self) -> None:
        self.gate.set()

    async def close(self) -> None:
        return None


# ---------------------------------------------------------------------------------- checks


class ScriptedCheck:
    """A check source whose readings come from ``script(ctx, n, baseline)``; ``n`` counts the
    measurements of that target from 1 (baselines are counted apart)."""

    def __init__(self, script: Callable[[Context, int, bool], Reading]):
        self.script = script
        self.counts: dict[tuple[str, bool], int] = {}

    async def _read(self, ctx: Context, baseline: bool) -> Reading:
        key = (ctx.target, baseline)
        self.counts[key] = self.counts.get(key, 0) + 1
        return self.script(ctx, self.counts[key], baseline)

    async def measure(self, ctx: Context) -> Reading:
        return await self._read(ctx, False)

    async def baseline(self, ctx: Context) -> Reading:
        return await self._read(ctx, True)

    async def close(self) -> None:
        return None


def scripted(script: Callable[[Context, int, bool], Reading]) -> Callable[..., ScriptedCheck]:
    """A ``check_factory`` giving every check the same script."""
    return lambda *args: ScriptedCheck(script)


# ---------------------------------------------------------------------------------- processes


def process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (absent, or a zombie nobody has reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


async def wait_gone(pids: Iterable[int], deadline: float = 10.0) -> list[int]:
    """Poll ``/proc`` until every pid is gone or the deadline passes; returns the ones left."""
    pids = list(pids)
    end = time.monotonic() + deadline
    while True:
        alive = [pid for pid in pids if not process_gone(pid)]
        if not alive or time.monotonic() > end:
            return alive
        await asyncio.sleep(0.05)


def read_pids(paths: Iterable[Path]) -> list[int]:
    return [int(p.read_text().strip()) for p in paths]


def kill_leftovers(pids: Iterable[int]) -> None:
    """Test cleanup: never leave a stray process behind, whatever the assertion said."""
    import signal

    for pid in pids:
        if not process_gone(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
