"""The live state of a rollout's targets and waves, as the engine (and any viewer) sees it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from sluice.engine.model.plan import Plan


class TargetStatus(StrEnum):
    """Where one target of a rollout is (a StrEnum: it compares, records and prints as its text)."""

    PENDING = "pending"
    APPLYING = "applying"
    OK = "ok"
    FAILED = "failed"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    UNKNOWN = "unknown"  # an apply started and never finished (its driver died)
    NOOP = "noop"  # already at the version: shown, never applied
    ABORTED = "aborted"


PENDING, APPLYING, OK, FAILED = (
    TargetStatus.PENDING,
    TargetStatus.APPLYING,
    TargetStatus.OK,
    TargetStatus.FAILED,
)
ROLLING_BACK, ROLLED_BACK, UNKNOWN, NOOP, ABORTED = (
    TargetStatus.ROLLING_BACK,
    TargetStatus.ROLLED_BACK,
    TargetStatus.UNKNOWN,
    TargetStatus.NOOP,
    TargetStatus.ABORTED,
)


class RolloutState(StrEnum):
    """What a rollout is doing (``Rollout.state``, ``StateChanged.state``, the console's badge)."""

    IDLE = "idle"
    RUNNING = "running"
    SOAKING = "soaking"
    PAUSED = "paused"
    AWAITING_APPROVAL = "awaiting_approval"
    INCONCLUSIVE = "inconclusive"
    HALTED = "halted"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    DONE = "done"
    ABORTED = "aborted"
    STOPPED = "stopped"
    CRASHED = "crashed"


class RolloutOutcome(StrEnum):
    """How a rollout ended (its ``RolloutFinished``), and so the exit code of the command."""

    DONE = "done"
    HALTED = "halted"  # a gate failed or was inconclusive, the failure budget was spent
    ABORTED = "aborted"
    STOPPED = "stopped"  # on purpose and resumable (--until-wave, a manual gate headless)
    CRASHED = "crashed"  # the engine failed; resumable like a driver that died
    HISTORY_FAILED = "history_failed"  # the history could not be written: stopped, resumable
    SUPERSEDED = "superseded"  # aborted because a new rollout of the module replaced it
    LEASE_LOST = "lease_lost"  # another driver took the lease over: this one stopped at once


class StopDriving(Exception):  # noqa: N818 - a signal, not an error
    """Raised through the engine when this process must stop driving at once (it lost the
    lease): never taken for an engine failure (``crashed``)."""


def stops_driving(exc: BaseException) -> bool:
    """``exc`` is, or a task group's exception holds, a :class:`StopDriving`."""
    if isinstance(exc, StopDriving):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(stops_driving(e) for e in exc.exceptions)
    return False


class Finish(Exception):
    """Ends :meth:`Rollout.run` with an outcome (stopped, halted, done, aborted)."""

    def __init__(self, outcome: RolloutOutcome, summary: str):
        self.outcome = Outcome(outcome, summary)


class ExitCode(IntEnum):
    """sluice's exit codes, a firm contract (docs/design.md: the command line)."""

    OK = 0
    HALTED = 1  # a gate failed or was inconclusive, the failure budget was spent
    BAD_INPUT = 2  # estate file, arguments, an unusable history
    ABORTED = 3  # operator, Ctrl-C, SIGTERM
    STOPPED = 4  # stopped before the end and resumable
    LOCKED = 5  # another process drives the estate
    LEASE_LOST = 6  # this process lost the lease to another driver and stopped at once
    HISTORY_UNWRITABLE = 7  # the history cannot be written (not writable, disk full, deleted)


#: Recorded outcomes of a rollout that `sluice resume` continues: left running by a process that
#: died, stopped on purpose (``--until-wave``, a manual gate headless), or crashed (the engine failed).
RESUMABLE = ("running", RolloutOutcome.STOPPED, RolloutOutcome.CRASHED)

#: Rollout outcomes and their exit codes.
OUTCOME_EXIT = {
    RolloutOutcome.DONE: ExitCode.OK,
    RolloutOutcome.HALTED: ExitCode.HALTED,
    RolloutOutcome.ABORTED: ExitCode.ABORTED,
    RolloutOutcome.STOPPED: ExitCode.STOPPED,
    RolloutOutcome.CRASHED: ExitCode.STOPPED,
    RolloutOutcome.HISTORY_FAILED: ExitCode.HISTORY_UNWRITABLE,
    RolloutOutcome.SUPERSEDED: ExitCode.ABORTED,  # aborted because a new rollout replaced it
    RolloutOutcome.LEASE_LOST: ExitCode.LEASE_LOST,
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


def plan_states(
    plan: Plan, prior: Mapping[str, tuple[str, str]]
) -> tuple[dict[str, TargetState], dict[int, WaveState]]:
    """The targets and waves of ``plan`` before it runs; ``prior``: target → (status, version)
    already recorded (a target no longer planned is left out)."""
    targets: dict[str, TargetState] = {}
    waves: dict[int, WaveState] = {}
    for wave in plan.waves:
        names = [t.name for t in wave.targets]
        waves[wave.number] = WaveState(
            wave.number, wave.name, wave.channel.name, names, wave.failure_budget
        )
        for t in wave.targets:
            targets[t.name] = TargetState(
                t.name, wave.number, t.channel, t.executor, t.from_version, t.to_version
            )
    for name, (status, version) in prior.items():
        if name in targets:
            targets[name].status, targets[name].version = status, version
    return targets, waves


class CommandResult(NamedTuple):
    """What an operator command did: accepted, or refused with the reason why."""

    ok: bool
    message: str


@dataclass(frozen=True)
class Outcome:
    outcome: RolloutOutcome
    summary: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "outcome", RolloutOutcome(self.outcome))  # refuses a typo

    @property
    def exit_code(self) -> int:
        return OUTCOME_EXIT[self.outcome]
