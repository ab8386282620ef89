"""Turn ``MODULE@VERSION`` and an estate into ordered waves with blast radius and ETA."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sluice.engine.model.estate import Channel, Estate, ExecutorSpec
from sluice.engine.model.units import Share
from sluice.engine.model.windows import Window

#: What an apply is expected to take when the executor does not say (``expected_duration``).
DEFAULT_APPLY_SECONDS = 60.0


class PlanError(Exception):
    """The requested module or version cannot be planned (exit code 2)."""


@dataclass(frozen=True)
class PlannedTarget:
    name: str
    channel: str
    executor: str
    from_version: str
    to_version: str

    @property
    def noop(self) -> bool:
        """Already at the version: shown, never applied."""
        return self.from_version == self.to_version


@dataclass(frozen=True)
class Wave:
    """One batch of a channel: applied concurrently, then soaked and gated."""

    number: int
    channel: Channel
    index_in_channel: int
    targets: tuple[PlannedTarget, ...]
    failure_budget: int
    blast_radius: float
    expected_seconds: float
    #: how many waves the channel really splits into (fewer than ``channel.waves`` lists when
    #: the channel is small); 0 when unknown
    waves_in_channel: int = 0

    @property
    def name(self) -> str:
        count = self.waves_in_channel or len(self.channel.waves)
        return f"{self.channel.name} {self.index_in_channel + 1}/{count}"

    @property
    def applies(self) -> tuple[PlannedTarget, ...]:
        return tuple(t for t in self.targets if not t.noop)


@dataclass(frozen=True)
class Plan:
    module: str
    version: str
    waves: tuple[Wave, ...]
    estate_targets: int

    @property
    def targets(self) -> tuple[PlannedTarget, ...]:
        return tuple(t for w in self.waves for t in w.targets)

    @property
    def expected_seconds(self) -> float:
        return sum(w.expected_seconds for w in self.waves)

    def to_dict(self) -> dict[str, object]:
        return {
            "module": self.module,
            "version": self.version,
            "estate_targets": self.estate_targets,
            "expected_seconds": round(self.expected_seconds, 3),
            "waves": [
                {
                    "number": w.number,
                    "channel": w.channel.name,
                    "name": w.name,
                    "index_in_channel": w.index_in_channel,
                    "waves_in_channel": w.waves_in_channel,
                    "gate": w.channel.gate,
                    "entry": w.channel.entry if w.index_in_channel == 0 else "auto",
                    "approvers": w.channel.approvers,
                    "soak_seconds": w.channel.soak,
                    "max_parallel": w.channel.max_parallel,
                    "failure_budget": w.failure_budget,
                    "blast_radius": round(w.blast_radius, 4),
                    "expected_seconds": round(w.expected_seconds, 3),
                    "targets": [
                        {"name": t.name, "from": t.from_version, "to": t.to_version, "noop": t.noop}
                        for t in w.targets
                    ],
                }
                for w in self.waves
            ],
        }

    @classmethod
    def from_dict(cls, estate: Estate, data: Mapping[str, Any]) -> Plan:
        """The plan a record holds (:meth:`to_dict`), against ``estate``: its channels and
        targets must still exist (raises :class:`PlanError` naming what is gone)."""
        waves = []
        for w in data["waves"]:
            channel = next((c for c in estate.channels if c.name == w["channel"]), None)
            if channel is None:
                raise PlanError(
                    f"channel {w['channel']!r} of the recorded plan is no longer in the estate"
                )
            targets = []
            for t in w["targets"]:
                spec = estate.targets.get(t["name"])
                if spec is None:
                    raise PlanError(
                        f"target {t['name']!r} of the recorded plan is no longer in the estate"
                    )
                targets.append(
                    PlannedTarget(t["name"], channel.name, spec.executor, t["from"], t["to"])
                )
            index, in_channel = _place(w)
            waves.append(
                Wave(
                    w["number"],
                    channel,
                    index,
                    tuple(targets),
                    w["failure_budget"],
                    w["blast_radius"],
                    w["expected_seconds"],
                    waves_in_channel=in_channel,
                )
            )
        return cls(data["module"], data["version"], tuple(waves), data["estate_targets"])

    def wave(self, number: int) -> Wave:
        """Wave ``number`` (1-based); raises PlanError for one the plan does not have."""
        if not 1 <= number <= len(self.waves):
            raise PlanError(f"wave {number}: the plan has {len(self.waves)} waves")
        return self.waves[number - 1]


def _place(wave: Mapping[str, Any]) -> tuple[int, int]:
    """A recorded wave's index in its channel and the channel's wave count. Records written
    before these were stored hold them only in the name ("staging 2/3")."""
    if "index_in_channel" in wave:
        return int(wave["index_in_channel"]), int(wave["waves_in_channel"])
    place, _, count = wave["name"].rsplit(" ", 1)[-1].partition("/")
    return (int(place) - 1, int(count)) if count else (0, 0)


def parse_spec(spec: str) -> tuple[str, str]:
    """Split ``"postgres-operator@2.0.0"``."""
    module, sep, version = spec.partition("@")
    if not sep or not module or not version:
        raise PlanError(f"{spec!r}: expected MODULE@VERSION, e.g. postgres-operator@2.0.0")
    return module, version


def wave_sizes(waves: tuple[Share, ...], size: int) -> list[int]:
    """Cumulative wave boundaries → per-wave sizes; every wave ≥ 1 target, the last takes the rest."""
    sizes: list[int] = []
    done = 0
    for wave in waves:
        if done >= size:
            break
        reach = min(size, max(done + 1, wave.cumulative(size)))
        sizes.append(reach - done)
        done = reach
    if done < size:
        if sizes:
            sizes[-1] += size - done
        else:
            sizes.append(size)
    return sizes


def expected_apply_seconds(executor: ExecutorSpec | None) -> float:
    if executor is None:
        return DEFAULT_APPLY_SECONDS
    if executor.settings.get("expected_duration") is not None:
        return float(executor.settings["expected_duration"])
    if executor.kind == "simulated":
        low, high = executor.settings.get("duration") or (1.0, 3.0)
        return (low + high) / 2
    return DEFAULT_APPLY_SECONDS


def make_plan(
    estate: Estate,
    module: str,
    version: str,
    current: Mapping[str, str] | None = None,
) -> Plan:
    """Plan rolling ``module`` to ``version`` across ``estate``.

    Args:
        current: each target's current version of the module (the history's ledger); targets
            missing from it run the module's ``initial``.

    Raises:
        PlanError: unknown module or version.
    """
    if module not in estate.modules:
        known = ", ".join(estate.modules)
        raise PlanError(f"unknown module {module!r} (the estate has: {known})")
    spec = estate.modules[module]
    if version not in spec.versions:
        raise PlanError(f"{module} has no version {version!r} (known: {', '.join(spec.versions)})")
    current = current or {}
    total = sum(1 for t in estate.targets.values() if t.runs(module))
    waves: list[Wave] = []
    covered = 0
    for channel in estate.channels:
        members = [estate.targets[n] for n in channel.targets if estate.targets[n].runs(module)]
        start = 0
        sizes = wave_sizes(channel.waves, len(members))
        for index, size in enumerate(sizes):
            batch = tuple(
                PlannedTarget(
                    t.name, channel.name, t.executor, current.get(t.name, spec.initial), version
                )
                for t in members[start : start + size]
            )
            start += size
            covered += len(batch)
            waves.append(
                Wave(
                    number=len(waves) + 1,
                    channel=channel,
                    index_in_channel=index,
                    targets=batch,
                    failure_budget=channel.max_failures.of(len(batch)),
                    blast_radius=covered / total if total else 0.0,
                    expected_seconds=_wave_seconds(estate, channel, batch),
                    waves_in_channel=len(sizes),
                )
            )
    return Plan(module, version, tuple(waves), total)


def _wave_seconds(estate: Estate, channel: Channel, batch: tuple[PlannedTarget, ...]) -> float:
    applies = [t for t in batch if not t.noop]
    if not applies:
        return 0.0
    slowest = max(expected_apply_seconds(estate.executors.get(t.executor)) for t in applies)
    rounds = math.ceil(len(applies) / channel.max_parallel)
    return rounds * slowest + channel.soak


#: Columns of :func:`plan_rows`, shared by ``sluice plan`` and the console's new-rollout modal.
#: ``entry`` is the approval before a channel's first wave; ``gate`` the one after each wave.
PLAN_COLUMNS = (
    "wave", "channel", "n", "change", "par", "budget", "entry", "gate", "soak", "blast", "ETA",
)  # fmt: skip
PLAN_NUMERIC = {"wave", "n", "par", "budget", "blast", "ETA"}


def entry_text(wave: Wave) -> str:
    """``approve`` (``approve×2``: two people) before a manual-entry channel's first wave."""
    if wave.channel.entry != "manual" or wave.index_in_channel != 0:
        return "—"
    return "approve" + (f"×{wave.channel.approvers}" if wave.channel.approvers > 1 else "")


def gate_text(wave: Wave) -> str:
    manual = wave.channel.gate == "manual" and wave.channel.approvers > 1
    return wave.channel.gate + (f"×{wave.channel.approvers}" if manual else "")


def window_waits(plan: Plan, windows: tuple[Window, ...], start: float) -> dict[int, float]:
    """Seconds each wave would wait for its change windows if the rollout began at ``start``
    and every wave took its expected time (approvals are not counted)."""
    from sluice.engine.model.windows import closed, utc

    waits: dict[int, float] = {}
    at = start
    for wave in plan.waves:
        shut = closed(windows, wave.channel.name, utc(at)) if windows else None
        if shut is not None and shut.opens is not None:
            waits[wave.number] = shut.opens.timestamp() - at
            at = shut.opens.timestamp()
        at += wave.expected_seconds
    return waits


def plan_rows(plan: Plan, waits: Mapping[int, float] | None = None) -> list[tuple[str, ...]]:
    """One row of text per wave (see :data:`PLAN_COLUMNS`), the ETA cumulative (with ``waits``
    for change windows, from :func:`window_waits`)."""
    from sluice.engine.model.units import format_duration
    from sluice.engine.model.windows import span_text

    rows: list[tuple[str, ...]] = []
    elapsed = 0.0
    for wave in plan.waves:
        wait = (waits or {}).get(wave.number, 0.0)
        elapsed += wave.expected_seconds + wait
        froms = sorted({t.from_version for t in wave.applies})
        rows.append(
            (
                str(wave.number),
                wave.name,
                str(len(wave.targets)),
                f"{','.join(froms)} → {plan.version}" if froms else "no-op",
                str(wave.channel.max_parallel),
                str(wave.failure_budget),
                entry_text(wave),
                gate_text(wave),
                format_duration(wave.channel.soak),
                f"{wave.blast_radius:.0%}",
                f"⏲+{span_text(elapsed)}" if wait else f"+{format_duration(elapsed)}",
            )
        )
    return rows


def approvals_note(plan: Plan) -> str:
    """What waits for people, for the plan's summary line (ETA does not count it)."""
    parts = []
    for wave in plan.waves:
        if wave.channel.entry == "manual" and wave.index_in_channel == 0:
            people = wave.channel.approvers
            who = "1 person" if people == 1 else f"{people} people"
            parts.append(f"{wave.channel.name} needs approval to start ({who})")
    manual = sum(1 for w in plan.waves if w.channel.gate == "manual")
    if manual:
        parts.append(f"{manual} manual gate(s) wait for approval")
    return "; ".join(parts) + (" — not counted" if parts else "")


def windows_note(plan: Plan, waits: Mapping[int, float]) -> str:
    """``wave 5 waits 2h13m for its change window`` for each wave the windows hold."""
    from sluice.engine.model.windows import span_text

    return "; ".join(
        f"wave {number} waits {span_text(seconds)} for its change window"
        for number, seconds in sorted(waits.items())
    ).replace("waits 0s", "waits <1s")
