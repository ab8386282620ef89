"""The console's view of targets, waves and measurements: plain data the widgets draw from."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

OUTPUT_LINES = 400
EVENT_LOG_LINES = 2000
#: Wave statuses after which the wave's expected time no longer counts towards the ETA.
WAVE_DONE = {"passed", "approved", "bypassed", "skipped", "rolled_back", "failed", "inconclusive"}
WAVE_SETTLED = {"passed", "approved", "bypassed", "skipped", "rolled_back"}
#: Rollout states in which the console waits for the operator (no ETA: it is up to them).
WAITING_STATES = {
    "awaiting_approval", "awaiting_entry", "held", "inconclusive", "halted", "rolled_back",
}  # fmt: skip
APPLY_OUTCOME_STATUS = {"ok": "ok", "failed": "failed", "aborted": "aborted", "unknown": "unknown"}


@dataclass
class TargetView:
    name: str
    channel: str
    wave: int | None = None
    status: str = "pending"
    version: str = ""
    from_version: str = ""
    to_version: str = ""
    duration: float | None = None
    reason: str = ""
    action: str = ""
    #: the last ``sluice drift`` result when it was not "in sync" (drifted, version mismatch, error)
    drift: str = ""
    #: an IaC apply's progress from its JSON stream, "3/5 resources" (shown while applying)
    progress: str = ""
    #: lines ever appended to ``output`` (the log widget appends only the ones it has not shown)
    written: int = 0
    output: deque[tuple[str, str]] = field(default_factory=lambda: deque(maxlen=OUTPUT_LINES))


@dataclass
class WaveView:
    number: int
    name: str
    channel: str
    gate: str
    targets: list[str]
    budget: int
    soak: float
    expected: float
    blast_radius: float
    status: str = "pending"
    verdict: str = ""
    reasons: tuple[str, ...] = ()
    gate_checks: dict[str, Any] = field(default_factory=dict)
    checks: tuple[str, ...] = ()
    started: float | None = None
    soak_started: float | None = None
    soak_seconds: float = 0.0
    early: bool = False
    detail: str = ""
    #: rear guard (``watch_after``): when the watch of this passed wave began, for how long
    #: (real seconds), and how it ended (``""`` while it runs)
    watch_started: float | None = None
    watch_seconds: float = 0.0
    watch_outcome: str = ""


@dataclass
class Series:
    """One check on one target in one wave: baseline, then soak measurements."""

    baseline: float | None = None
    values: list[float | None] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return self.outcomes.count(outcome)


@dataclass
class Limits:
    max: float | None = None
    min: float | None = None
    max_increase: float | None = None


@dataclass
class Dirty:
    """What changed since the widgets last looked."""

    structure: bool = False
    targets: set[str] = field(default_factory=set)
    waves: set[int] = field(default_factory=set)
    metrics: set[int] = field(default_factory=set)
    log: bool = False
    output: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(
            self.structure or self.targets or self.waves or self.metrics or self.log or self.output
        )


def clock_text(seconds: float) -> str:
    """``0:01:12``: steady-width elapsed time (whole seconds, so it does not flicker)."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
