"""The executor protocol: one small interface that local, SSH, HTTP and simulated applies share.

An executor is created once per ``[executors.NAME]`` per rollout (so it may pool connections), is
given one :class:`Job` per apply or rollback, streams output lines to an :class:`OutputSink`, and
returns an :class:`ApplyResult`. Cancelling the task that awaits :meth:`Executor.apply` must stop
the work cleanly — processes killed, channels closed — before ``CancelledError`` propagates.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from sluice.engine.model.template import Context

if TYPE_CHECKING:
    from sluice.engine.model.estate import Estate, ExecutorSpec
    from sluice.engine.support.clock import Clock
    from sluice.engine.support.resources import Resources

#: ``sink(stream, line)`` with ``stream`` "stdout" or "stderr"; lines have no trailing newline.
OutputSink = Callable[[str, str], None]


@dataclass(frozen=True)
class Job:
    """One apply (or rollback) of ``module`` to ``version`` on one target."""

    target: str
    channel: str
    module: str
    version: str
    previous_version: str
    action: str  # "apply" | "rollback"
    vars: Mapping[str, str] = field(default_factory=dict, hash=False)
    #: The target's last apply has an unknown outcome (a sluice that stopped mid-apply): an
    #: executor that can see it may still be running waits for it before starting this one.
    after_unknown: bool = False
    #: Where this apply's spool files go (``<dir>/<target>.<attempt>``, see executors.spool);
    #: executors that spool (``spools = True``) write there, the others ignore it.
    spool: Path | None = field(default=None, compare=False)
    #: Told when the executor stops this apply (abort, timeout): ``(signal name, seconds until
    #: SIGKILL)``, ``("SIGKILL", 0)`` for the kill itself; the console counts it down.
    on_stop: Callable[[str, float], None] | None = field(default=None, compare=False)

    #: Called right before the executor starts anything on the target, with no wait in between;
    #: raises (:class:`~sluice.engine.rollout.state.StopDriving`) when this process may no
    #: longer act — it lost the lease while it waited (see ``Recorder.may_launch``).
    may_launch: Callable[[], None] | None = field(default=None, compare=False)

    def launching(self) -> None:
        """Call :attr:`may_launch` (if any): the last word before an apply starts."""
        if self.may_launch is not None:
            self.may_launch()

    def stopping(self, signal_name: str, grace: float) -> None:
        """Tell :attr:`on_stop` (if any) that ``signal_name`` was sent, SIGKILL in ``grace``."""
        if self.on_stop is not None:
            self.on_stop(signal_name, grace)

    @property
    def context(self) -> Context:
        return Context(
            target=self.target,
            channel=self.channel,
            module=self.module,
            version=self.version,
            previous_version=self.previous_version,
            vars=self.vars,
        )


@dataclass(frozen=True)
class ApplyResult:
    """``ok`` decides; ``reason`` is one line the operator reads when it failed."""

    ok: bool
    reason: str = ""
    exit_code: int | None = None


class Executor(Protocol):
    def describe(self, job: Job) -> str:
        """What will run, for the event log — secrets masked."""
        ...

    async def apply(self, job: Job, output: OutputSink) -> ApplyResult:
        """Run ``job`` to completion; never raises except ``CancelledError``."""
        ...

    async def close(self) -> None:
        """Release pooled resources (connections) at the end of the rollout."""
        ...


class AdoptingExecutor(Executor, Protocol):
    """An executor whose applies outlive sluice (spooled, with a status file): a resume looks
    for an apply a stopped sluice left and adopts it instead of running it again."""

    spools: bool

    async def look(self, job: Job) -> str:
        """``finished`` (a status exists), ``running`` (its process still runs) or ``none``."""
        ...

    async def adopt(self, job: Job, output: OutputSink) -> ApplyResult | None:
        """Wait for the apply ``look`` found (tailing its output) and return its real outcome;
        None if it vanished without a status (then its outcome stays unknown)."""
        ...


#: kind → "module:Class"; imported lazily so an estate without SSH never loads asyncssh.
EXECUTOR_KINDS = {
    "local": "sluice.engine.executors.local:LocalExecutor",
    "simulated": "sluice.engine.executors.simulated:SimulatedExecutor",
    "ssh": "sluice.engine.executors.ssh:SshExecutor",
    "http": "sluice.engine.executors.http:HttpExecutor",
    "tofu": "sluice.engine.executors.tofu:TofuExecutor",
}


def executor_class(kind: str) -> Callable[..., Executor]:
    """The class of executors of ``kind``; the first call imports its module (and asyncssh or
    aiohttp with it)."""
    module_name, _, class_name = EXECUTOR_KINDS[kind].partition(":")
    cls: Callable[..., Executor] = getattr(importlib.import_module(module_name), class_name)
    return cls


def create_executor(
    spec: ExecutorSpec, estate: Estate, clock: Clock, resources: Resources
) -> Executor:
    """Instantiate the executor for ``spec`` (``cls(spec, estate, clock, resources)``)."""
    return executor_class(spec.kind)(spec, estate, clock, resources)
