"""Baselines before a wave, then the soak: measuring every check on every target, judging the gate."""

from __future__ import annotations

import asyncio
import statistics
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


def _context(rollout: Rollout, target: TargetState) -> Context:
    return rollout.estate.context(
        target.name, rollout.plan.module, target.version, target.from_version
    )


async def _read(
    source: CheckSource, ctx: Context, semaphore: asyncio.Semaphore, baseline: bool = False
) -> Reading:
    async with semaphore:
        try:
            return await (source.baseline(ctx) if baseline else source.measure(ctx))
        except Exception as exc:  # a source bug is an error measurement, never a crash
            return Reading(error=f"{type(exc).__name__}: {exc}")


async def take_baselines(
    rollout: Rollout,
    wave: Wave,
    checks: list[CheckSpec],
    sources: dict[str, CheckSource],
    targets: list[TargetState],
) -> Gate:
    """Measure each check on each target of ``wave`` before its applies: the ``self`` baseline."""
    gate = Gate(checks, [t.name for t in targets])
    semaphore = asyncio.Semaphore(SAMPLE_CONCURRENCY)

    async def one(spec: CheckSpec, target: TargetState, sample: int = 0) -> None:
        key = (wave.number, spec.name, target.name)
        if (
            key in rollout.recorded_baselines and not sample
        ):  # resumed: the value taken before the restart
            reading = Reading(
                value=rollout.recorded_baselines[key], detail="recorded before the restart"
            )
        elif target.status != PENDING and not sample:
            # Resumed after this target's apply: measuring now would take the new version as
            # the baseline and hide a regression. No baseline → its measurements are inconclusive.
            reading = Reading(
                detail="no baseline was recorded before it was applied (resumed): "
                "its measurements cannot be compared"
            )
        else:
            reading = await _read(
                sources[spec.name], _context(rollout, target), semaphore, baseline=True
            )
        value = reading.value if reading.error is None else None
        gate.set_baseline(spec.name, target.name, value)
        rollout.bus.emit(
            SampleTaken,
            wave=wave.number,
            check=spec.name,
            target=target.name,
            phase="baseline",
            value=value,
            baseline=None,
            outcome="baseline"
            if value is not None
            else ("error" if reading.error else "inconclusive"),
            reason=reading.error or reading.detail,
        )

    await asyncio.gather(*(one(spec, t) for spec in checks for t in targets))
    # The U test needs several pre-wave samples; a resumed wave has only the one recorded.
    pooled = [s for s in checks if s.compare == "mann-whitney" and s.baseline == "self"]
    pending = [t for t in targets if t.status == PENDING]
    windowed = [
        _pre_wave_series(rollout, wave, spec, sources[spec.name], gate, t, semaphore)
        for spec in pooled
        if hasattr(sources[spec.name], "baseline_series")
        for t in pending
    ]
    repeated = [
        one(spec, t, n)
        for spec in pooled
        if not hasattr(sources[spec.name], "baseline_series")
        for t in pending
        for n in range(1, PRE_WAVE_SAMPLES)
    ]
    await asyncio.gather(*windowed, *repeated)
    return gate


async def _pre_wave_series(
    rollout: Rollout,
    wave: Wave,
    spec: CheckSpec,
    source: CheckSource,
    gate: Gate,
    target: TargetState,
    semaphore: asyncio.Semaphore,
) -> None:
    """A source with a history (Prometheus over ``baseline_window``) gives the pool at once."""
    async with semaphore:
        try:
            readings: list[Reading] = await source.baseline_series(_context(rollout, target))  # type: ignore[attr-defined]
        except Exception as exc:  # a source bug: no pool, the test stays undecidable
            readings = [Reading(error=f"{type(exc).__name__}: {exc}")]
    values = [r.value for r in readings if r.error is None and r.value is not None]
    gate.series[(spec.name, target.name)].baseline_values = [v for v in values if v == v]
    for r in readings:
        rollout.bus.emit(
            SampleTaken,
            wave=wave.number,
            check=spec.name,
            target=target.name,
            phase="baseline",
            value=r.value if r.error is None else None,
            baseline=None,
            outcome="baseline" if r.value is not None and r.error is None else "inconclusive",
            reason=r.error or r.detail,
        )


def _control_group(rollout: Rollout, wave: Wave) -> list[TargetState]:
    later = [
        rollout.targets[t.name]
        for w in rollout.plan.waves[wave.number :]
        for t in w.targets
        if rollout.targets[t.name].status == PENDING
    ]
    return later[:CONTROL_GROUP_SIZE]


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
    semaphore = asyncio.Semaphore(SAMPLE_CONCURRENCY)
    control = _control_group(rollout, wave)
    done = rollout.soak_ended

    async def measure_round(spec: CheckSpec) -> None:
        control_median: float | None = None
        if spec.baseline == "control" and control:
            readings = await asyncio.gather(
                *(_read(sources[spec.name], _context(rollout, c), semaphore) for c in control)
            )
            values = [r.value for r in readings if r.error is None and r.value is not None]
            control_median = statistics.median(values) if values else None
            gate.add_control(spec.name, values)
            for c, r in zip(control, readings, strict=True):
                rollout.bus.emit(
                    SampleTaken,
                    wave=wave.number,
                    check=spec.name,
                    target=c.name,
                    phase="control",
                    value=r.value if r.error is None else None,
                    baseline=None,
                    outcome="error"
                    if r.error is not None
                    else ("baseline" if r.value is not None else "inconclusive"),
                    reason=r.error or r.detail,
                )
        readings = await asyncio.gather(
            *(_read(sources[spec.name], _context(rollout, t), semaphore) for t in targets)
        )
        for t, reading in zip(targets, readings, strict=True):
            baseline = control_median if spec.baseline == "control" and control else None
            outcome, reason = gate.record(spec.name, t.name, reading, baseline)
            shown_baseline = (
                baseline if baseline is not None else gate.series[(spec.name, t.name)].baseline
            )
            rollout.bus.emit(
                SampleTaken,
                wave=wave.number,
                check=spec.name,
                target=t.name,
                phase="soak",
                value=reading.value if reading.error is None else None,
                baseline=shown_baseline,
                outcome=outcome,
                reason=reason,
            )
        if gate.early_verdict() is not None:
            done.set()

    async def check_loop(spec: CheckSpec) -> None:
        rounds = max(1, int(soak // spec.interval)) if soak > 0 else 1
        for _ in range(rounds):
            try:
                await asyncio.wait_for(
                    done.wait(), timeout=rollout.clock.scaled(spec.interval) if soak > 0 else 0
                )
                return
            except TimeoutError:
                pass
            await measure_round(spec)

    loops = [asyncio.ensure_future(check_loop(spec)) for spec in checks]
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
    ended_early = done.is_set()
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
