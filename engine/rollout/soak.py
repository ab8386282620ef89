"""Baselines before a wave, then the soak: measuring every check on every target, judging the gate."""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from sluice.engine.checks.base import CheckSource, Reading
from sluice.engine.model.estate import CheckSpec
from sluice.engine.model.plan import Wave
from sluice.engine.model.template import Context
from sluice.engine.rollout.events import GateEvaluated, SampleTaken, SoakStarted
from sluice.engine.rollout.gate import Gate
from sluice.engine.rollout.state import PENDING, TargetState

if TYPE_CHECKING:
    from sluice.engine.rollout.controls import RolloutControls as Rollout

#: Measurements in flight at once across a wave (a large wave must not flood a Prometheus).
SAMPLE_CONCURRENCY = 64
#: At most this many not-yet-upgraded targets form a control group.
CONTROL_GROUP_SIZE = 16
#: ``compare = "mann-whitney"``, ``baseline = "self"``: pre-wave samples per target and check.
PRE_WAVE_SAMPLES = 8


def target_context(rollout: Rollout, target: TargetState) -> Context:
    """What a check's query is rendered with for ``target`` (its version now)."""
    return rollout.estate.context(
        target.name, rollout.plan.module, target.version, target.from_version
    )


async def read_check(
    source: CheckSource, ctx: Context, semaphore: asyncio.Semaphore, baseline: bool = False
) -> Reading:
    """One measurement (or baseline) of ``source``; a source's bug is an error reading."""
    async with semaphore:
        try:
            return await (source.baseline(ctx) if baseline else source.measure(ctx))
        except Exception as exc:  # a source bug is an error measurement, never a crash
            return Reading(error=f"{type(exc).__name__}: {exc}")


def control_group(rollout: Rollout, wave: Wave) -> list[TargetState]:
    """Targets of later waves still on the old version (at most :data:`CONTROL_GROUP_SIZE`)."""
    later = [
        rollout.targets[t.name]
        for w in rollout.plan.waves[wave.number :]
        for t in w.targets
        if rollout.targets[t.name].status == PENDING
    ]
    return later[:CONTROL_GROUP_SIZE]


class _Sampler:
    """Measures one wave's checks, at most :data:`SAMPLE_CONCURRENCY` at once, and says each
    sample on the rollout's stream."""

    def __init__(self, rollout: Rollout, wave: Wave, sources: dict[str, CheckSource], gate: Gate):
        self.rollout = rollout
        self.wave = wave
        self.sources = sources
        self.gate = gate
        self.semaphore = asyncio.Semaphore(SAMPLE_CONCURRENCY)

    async def read(self, spec: CheckSpec, target: TargetState, baseline: bool = False) -> Reading:
        ctx = target_context(self.rollout, target)
        return await read_check(self.sources[spec.name], ctx, self.semaphore, baseline)

    def said(
        self,
        spec: CheckSpec,
        target: str,
        phase: str,
        value: float | None,
        outcome: str,
        reason: str,
        baseline: float | None = None,
    ) -> None:
        self.rollout.bus.emit(
            SampleTaken,
            wave=self.wave.number,
            check=spec.name,
            target=target,
            phase=phase,
            value=value,
            baseline=baseline,
            outcome=outcome,
            reason=reason,
        )


# ---------------------------------------------------------------------- baselines


async def take_baselines(
    rollout: Rollout,
    wave: Wave,
    checks: list[CheckSpec],
    sources: dict[str, CheckSource],
    targets: list[TargetState],
) -> Gate:
    """Measure each check on each target of ``wave`` before its applies: the ``self`` baseline."""
    gate = Gate(checks, [t.name for t in targets])
    sampler = _Sampler(rollout, wave, sources, gate)
    await asyncio.gather(*(_baseline(sampler, spec, t) for spec in checks for t in targets))
    # The U test needs several pre-wave samples; a resumed wave has only the one recorded.
    pooled = [s for s in checks if s.compare == "mann-whitney" and s.baseline == "self"]
    pending = [t for t in targets if t.status == PENDING]
    windowed = [
        _pre_wave_series(sampler, spec, t)
        for spec in pooled
        if hasattr(sources[spec.name], "baseline_series")
        for t in pending
    ]
    repeated = [
        _baseline(sampler, spec, t, n)
        for spec in pooled
        if not hasattr(sources[spec.name], "baseline_series")
        for t in pending
        for n in range(1, PRE_WAVE_SAMPLES)
    ]
    await asyncio.gather(*windowed, *repeated)
    return gate


async def _baseline(
    sampler: _Sampler, spec: CheckSpec, target: TargetState, sample: int = 0
) -> None:
    """One baseline of ``spec`` on ``target`` (``sample`` > 0: another pre-wave sample)."""
    reading = await _baseline_reading(sampler, spec, target, sample)
    value = reading.value if reading.error is None else None
    sampler.gate.set_baseline(spec.name, target.name, value)
    outcome = "baseline" if value is not None else ("error" if reading.error else "inconclusive")
    sampler.said(spec, target.name, "baseline", value, outcome, reading.error or reading.detail)


async def _baseline_reading(
    sampler: _Sampler, spec: CheckSpec, target: TargetState, sample: int
) -> Reading:
    """The value recorded before a restart, none for a target applied already, or a measurement."""
    recorded = sampler.rollout.recorded_baselines
    key = (sampler.wave.number, spec.name, target.name)
    if key in recorded and not sample:  # resumed: the value taken before the restart
        return Reading(value=recorded[key], detail="recorded before the restart")
    if target.status != PENDING and not sample:
        # Resumed after this target's apply: measuring now would take the new version as
        # the baseline and hide a regression. No baseline → its measurements are inconclusive.
        return Reading(
            detail="no baseline was recorded before it was applied (resumed): "
            "its measurements cannot be compared"
        )
    return await sampler.read(spec, target, baseline=True)


async def _pre_wave_series(sampler: _Sampler, spec: CheckSpec, target: TargetState) -> None:
    """A source with a history (Prometheus over ``baseline_window``) gives the pool at once."""
    source = sampler.sources[spec.name]
    async with sampler.semaphore:
        try:
            readings: list[Reading] = await source.baseline_series(  # type: ignore[attr-defined]
                target_context(sampler.rollout, target)
            )
        except Exception as exc:  # a source bug: no pool, the test stays undecidable
            readings = [Reading(error=f"{type(exc).__name__}: {exc}")]
    values = [r.value for r in readings if r.error is None and r.value is not None]
    sampler.gate.series[(spec.name, target.name)].baseline_values = [v for v in values if v == v]
    for r in readings:
        ok = r.value is not None and r.error is None
        value = r.value if r.error is None else None
        outcome = "baseline" if ok else "inconclusive"
        sampler.said(spec, target.name, "baseline", value, outcome, r.error or r.detail)


# ---------------------------------------------------------------------- the soak


async def run_soak(
    rollout: Rollout,
    wave: Wave,
    checks: list[CheckSpec],
    sources: dict[str, CheckSource],
    gate: Gate,
    targets: list[TargetState],
) -> tuple[str, list[str]]:
    """Soak ``wave``: measure every ``interval`` for ``soak``; return the verdict and its reasons."""
    soak = wave.channel.soak
    rollout.bus.emit(
        SoakStarted,
        wave=wave.number,
        seconds=rollout.clock.scaled(soak),
        configured=soak,
        checks=tuple(c.name for c in checks),
    )
    sampler = _Sampler(rollout, wave, sources, gate)
    control = control_group(rollout, wave)
    await _until_soak_ends(
        rollout, [_check_loop(sampler, spec, targets, control) for spec in checks], soak
    )
    ended_early = rollout.soak_ended.is_set()
    if rollout.soak_bypassed:
        verdict, reasons = "bypassed", ["gate bypassed by the operator"]
    elif not checks:
        verdict, reasons = "passed", ["no checks configured for this channel"]
    else:
        verdict, reasons = gate.final_verdict()
    rollout.bus.emit(
        GateEvaluated,
        wave=wave.number,
        verdict=verdict,
        reasons=tuple(reasons),
        checks=gate.summary(),
        early=ended_early,
    )
    return verdict, reasons


async def _until_soak_ends(
    rollout: Rollout, check_loops: list[Coroutine[Any, Any, None]], soak: float
) -> None:
    """Run the checks' loops until they are all done or the soak is ended (early verdict,
    advance, bypass); with no checks, wait out the soak."""
    done = rollout.soak_ended
    loops = [asyncio.ensure_future(loop) for loop in check_loops]
    ender = asyncio.ensure_future(done.wait())
    # Awaited in the ``finally`` too: a gather cancelled and never awaited logs an error.
    all_loops: asyncio.Future[Any] = asyncio.gather(*loops)
    try:
        if loops:
            waiting: list[asyncio.Future[Any]] = [all_loops, ender]
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        else:
            await asyncio.wait([ender], timeout=rollout.clock.scaled(soak))
    finally:
        ender.cancel()
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, ender, all_loops, return_exceptions=True)


async def _check_loop(
    sampler: _Sampler, spec: CheckSpec, targets: list[TargetState], control: list[TargetState]
) -> None:
    """A round of ``spec`` every ``interval`` of the soak, until it ends."""
    soak = sampler.wave.channel.soak
    clock, done = sampler.rollout.clock, sampler.rollout.soak_ended
    rounds = max(1, int(soak // spec.interval)) if soak > 0 else 1
    for _ in range(rounds):
        try:
            await asyncio.wait_for(
                done.wait(), timeout=clock.scaled(spec.interval) if soak > 0 else 0
            )
            return
        except TimeoutError:
            pass
        await _soak_round(sampler, spec, targets, control)


async def _soak_round(
    sampler: _Sampler, spec: CheckSpec, targets: list[TargetState], control: list[TargetState]
) -> None:
    """Measure ``spec`` on every target once (against the control group's median now, for
    ``baseline = "control"``); end the soak when the gate's verdict cannot change any more."""
    gate = sampler.gate
    by_control = spec.baseline == "control" and bool(control)
    baseline = await _control_median(sampler, spec, control) if by_control else None
    readings = await asyncio.gather(*(sampler.read(spec, t) for t in targets))
    for t, reading in zip(targets, readings, strict=True):
        outcome, reason = gate.record(spec.name, t.name, reading, baseline)
        shown = baseline if baseline is not None else gate.series[(spec.name, t.name)].baseline
        value = reading.value if reading.error is None else None
        sampler.said(spec, t.name, "soak", value, outcome, reason, baseline=shown)
    if gate.early_verdict() is not None:
        sampler.rollout.soak_ended.set()


async def _control_median(
    sampler: _Sampler, spec: CheckSpec, control: list[TargetState]
) -> float | None:
    """Measure ``spec`` on the control group; the median of what it gave (recorded in the gate)."""
    readings = await asyncio.gather(*(sampler.read(spec, c) for c in control))
    values = [r.value for r in readings if r.error is None and r.value is not None]
    sampler.gate.add_control(spec.name, values)
    for c, r in zip(control, readings, strict=True):
        value = r.value if r.error is None else None
        outcome = (
            "error"
            if r.error is not None
            else ("baseline" if r.value is not None else "inconclusive")
        )
        sampler.said(spec, c.name, "control", value, outcome, r.error or r.detail)
    return statistics.median(values) if values else None
