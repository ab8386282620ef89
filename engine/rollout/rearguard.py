"""Rear-guard gates: a passed wave is watched while later waves run (channel ``watch_after``).

After a wave's gate passes, its checks go on being measured on its targets every check
``interval`` for ``watch_after``, judged like the soak (the same baselines, the same limits,
``failure_limit`` failed measurements tolerated). A regression there *trips* the guard: no new
apply starts (in-flight ones finish), a soak running now ends, and the rollout halts saying
which earlier wave regressed and when — "wave 2 (dev) regressed 40s after it passed:
p99_latency 0.41 > max 0.25 on dev-eu-1".

Only failed measurements trip it: missing data and source errors are recorded and shown but do
not halt a rollout whose wave already passed its gate (a monitoring outage an hour later must not
stop a release; the gate that let the wave through was fail-closed). The elapsed times are in
estate time (rounds × ``interval``), so they read the same at any ``--time-scale``.

A rollout whose last wave is done still waits for the watches that run (state ``watching``);
a rollout stopped (``--until-wave``, a kill) takes its watches with it — ``resume`` does not
restart them.
"""

from __future__ import annotations

import asyncio
import statistics
from typing import TYPE_CHECKING

from sluice.engine.checks.base import CheckSource
from sluice.engine.model.estate import CheckSpec
from sluice.engine.model.plan import Wave
from sluice.engine.model.units import format_duration
from sluice.engine.rollout.events import Notice, SampleTaken, WatchEnded, WatchStarted
from sluice.engine.rollout.gate import FAIL, Gate
from sluice.engine.rollout.soak import (
    SAMPLE_CONCURRENCY,
    control_group,
    read_check,
    target_context,
)
from sluice.engine.rollout.state import OK, TargetState

if TYPE_CHECKING:
    from sluice.engine.rollout.controls import RolloutControls as Rollout


class RearGuard:
    """The watches of one rollout's passed waves; :attr:`tripped` says why it must halt."""

    def __init__(self, rollout: Rollout):
        self.rollout = rollout
        self.tasks: dict[int, asyncio.Task[None]] = {}
        #: the first regression seen, as the halt says it (None: none)
        self.tripped: str | None = None
        self.tripped_wave: int | None = None
        self._cancelled: set[int] = set()

    def watch(
        self,
        wave: Wave,
        checks: list[CheckSpec],
        sources: dict[str, CheckSource],
        gate: Gate,
        targets: list[TargetState],
    ) -> None:
        """Start watching ``wave`` (its gate just passed) if its channel has ``watch_after``."""
        seconds = wave.channel.watch_after
        applied = [t for t in targets if t.status == OK]
        if seconds <= 0 or not checks or not applied or self.tripped:
            return
        self.rollout.bus.emit(
            WatchStarted,
            wave=wave.number,
            seconds=self.rollout.clock.scaled(seconds),
            configured=seconds,
            checks=tuple(c.name for c in checks),
            targets=tuple(t.name for t in applied),
        )
        task = asyncio.ensure_future(self._watch(wave, checks, sources, gate, applied))
        self.tasks[wave.number] = task

    @property
    def watching(self) -> list[int]:
        return [n for n, task in self.tasks.items() if not task.done()]

    async def drain(self) -> None:
        """Wait until every watch is over (or one tripped)."""
        pending = [t for t in self.tasks.values() if not t.done()]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def close(self) -> None:
        """Cancel the watches still running (the rollout ends)."""
        pending = {n: t for n, t in self.tasks.items() if not t.done()}
        for task in pending.values():
            task.cancel()
        if pending:
            await asyncio.gather(*pending.values(), return_exceptions=True)
        for number in pending:
            if number != self.tripped_wave:  # that one ended "regressed"
                self._cancel_said(number)

    def _cancel_said(self, number: int) -> None:
        if number not in self._cancelled:
            self._cancelled.add(number)
            self.rollout.bus.emit(WatchEnded, wave=number, outcome="cancelled")

    async def _watch(
        self,
        wave: Wave,
        checks: list[CheckSpec],
        sources: dict[str, CheckSource],
        soak_gate: Gate,
        targets: list[TargetState],
    ) -> None:
        rollout = self.rollout
        seconds = wave.channel.watch_after
        names = [t.name for t in targets]
        gate = Gate(checks, names)
        for (check, target), series in soak_gate.series.items():
            if target in names:  # the soak's baselines: a regression is measured against them
                gate.series[(check, target)].baseline = series.baseline
                gate.series[(check, target)].baseline_values = list(series.baseline_values)
        gate.control_values = {k: list(v) for k, v in soak_gate.control_values.items()}
        semaphore = asyncio.Semaphore(SAMPLE_CONCURRENCY)
        loops = [
            self._loop(wave, spec, sources[spec.name], gate, targets, semaphore) for spec in checks
        ]
        await asyncio.gather(*loops)
        if self.tripped_wave == wave.number:
            return  # said by _trip
        rollout.bus.emit(
            WatchEnded,
            wave=wave.number,
            outcome="passed",
            detail=f"no regression in {format_duration(seconds)} after it passed",
            elapsed=seconds,
        )

    async def _loop(
        self,
        wave: Wave,
        spec: CheckSpec,
        source: CheckSource,
        gate: Gate,
        targets: list[TargetState],
        semaphore: asyncio.Semaphore,
    ) -> None:
        rollout = self.rollout
        rounds = max(1, int(wave.channel.watch_after // spec.interval))
        for round_number in range(1, rounds + 1):
            await rollout.clock.sleep(spec.interval)
            if self.tripped:
                return
            control = await self._control_median(wave, spec, source, semaphore)
            readings = await asyncio.gather(
                *(read_check(source, target_context(rollout, t), semaphore) for t in targets)
            )
            for target, reading in zip(targets, readings, strict=True):
                outcome, reason = gate.record(spec.name, target.name, reading, control)
                series = gate.series[(spec.name, target.name)]
                rollout.bus.emit(
                    SampleTaken,
                    wave=wave.number,
                    check=spec.name,
                    target=target.name,
                    phase="watch",
                    value=reading.value if reading.error is None else None,
                    baseline=control if control is not None else series.baseline,
                    outcome=outcome,
                    reason=reason,
                )
                if outcome == FAIL and series.fails > spec.failure_limit and not self.tripped:
                    self._trip(wave, spec.name, target.name, reason, round_number * spec.interval)
            if self.tripped:
                return

    async def _control_median(
        self, wave: Wave, spec: CheckSpec, source: CheckSource, semaphore: asyncio.Semaphore
    ) -> float | None:
        """``baseline = "control"``: the median of the targets still on the old version now."""
        if spec.baseline != "control" or spec.compare == "mann-whitney":
            return None
        rollout = self.rollout
        control = control_group(rollout, wave)
        if not control:
            return None
        readings = await asyncio.gather(
            *(read_check(source, target_context(rollout, t), semaphore) for t in control)
        )
        values = [r.value for r in readings if r.error is None and r.value is not None]
        return statistics.median(values) if values else None

    def _trip(self, wave: Wave, check: str, target: str, reason: str, elapsed: float) -> None:
        rollout = self.rollout
        self.tripped_wave = wave.number
        self.tripped = (
            f"rear guard: wave {wave.number} ({wave.name}) regressed {format_duration(elapsed)} "
            f"after it passed: {check} {reason} on {target}"
        )
        rollout.bus.emit(
            WatchEnded, wave=wave.number, outcome="regressed", detail=self.tripped, elapsed=elapsed
        )
        rollout.bus.emit(Notice, level="error", message=self.tripped + " — halting")
        rollout.soak_ended.set()  # a soak running now ends: the rollout halts after it
        for number, task in self.tasks.items():
            if number != wave.number and not task.done():
                task.cancel()
                self._cancel_said(number)
