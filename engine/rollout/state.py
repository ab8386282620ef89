"""The live state of a rollout's targets and waves, as the engine (and any viewer) sees it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, NamedTuple

#: Target statuses: pending, applying, ok, failed, rolling_back, rolled_back, unknown, noop, aborted.
PENDING, APPLYING, OK, FAILED = "pending", "applying", "ok", "failed"
ROLLING_BACK, ROLLED_BACK, UNKNOWN, NOOP, ABORTED = (
    "rolling_back",
    "rolled_back",
    "unknown",
    "noop",
    "aborted",
)


class ExitCode(IntEnum):
    """sluice's exit codes, a firm contract (docs/design.md: the command line)."""

    OK = 0
    HALTED = 1  # a gate failed or was inconclusive, the failure budget was spent
    BAD_INPUT = 2  # estate file, arguments, an unusable history
    ABORTED = 3  # operator, Ctrl-C, SIGTERM
    STOPPED = 4  # stopped before the end and resumable
    LOCKED = 5  # another process drives the estate
    LEASE_LOST = 6  # this process lost the lease to another driver and stopped at once


#: Rollout outcomes and their exit codes.
OUTCOME_EXIT = {
    "done": ExitCode.OK,
    "halted": ExitCode.HALTED,
    "aborted": ExitCode.ABORTED,
    "stopped": ExitCode.STOPPED,
    "lease_lost": ExitCode.LEASE_LOST,
}


@dataclass
class TargetState:
    name: str
    wave: int
    channel: str
    executor: str
    from_version: str
    to_version: str
    status: str = PENDING
    version: str = ""
    reason: str = ""
    duration: float = 0.0
    attempts: int = 0

    def __post_init__(self) -> None:
        if not self.version:
            self.version = self.from_version
        if self.from_version == self.to_version and self.status == PENDING:
            self.status = NOOP

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "status":
            tally = self.__dict__.get("_tally")
            if tally is not None:
                tally[self.__dict__["status"]] -= 1
                tally[value] += 1
        object.__setattr__(self, name, value)

    def track(self, tally: Counter[str]) -> None:
        """Keep ``tally`` (status → count, e.g. one per wave) current as this target's status changes.

        Counting a wave's statuses on every check of its failure budget would be O(n²) across a
        large wave; this keeps it O(1) whoever assigns ``status``.
        """
        previous = self.__dict__.get("_tally")
        if previous is not None:
            previous[self.status] -= 1
        tally[self.status] += 1
        self.__dict__["_tally"] = tally


@dataclass
class WaveState:
    number: int
    name: str
    channel: str
    targets: list[str]
    failure_budget: int
    status: str = "pending"  # pending applying soaking awaiting passed approved bypassed failed inconclusive rolled_back halted skipped
    verdict: str = ""
    reasons: list[str] = field(default_factory=list)


class CommandResult(NamedTuple):
    """What an operator command did: accepted, or refused with the reason why."""

    ok: bool
    message: str


@dataclass(frozen=True)
class Outcome:
    outcome: str  # done | halted | aborted | stopped | lease_lost
    summary: str

    @property
    def exit_code(self) -> int:
        return OUTCOME_EXIT[self.outcome]
