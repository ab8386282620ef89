"""The parts of an estate — channels, targets, executors, checks, modules, notifiers, simulated
regressions — as the validator builds them: frozen, every value checked and defaults filled.

:class:`sluice.engine.model.estate.Estate` holds them; :mod:`sluice.engine.model.validator` builds them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sluice.engine.model.units import Share


@dataclass(frozen=True)
class Channel:
    """A release channel: its targets roll out together, wave by wave."""

    name: str
    index: int
    waves: tuple[Share, ...]
    max_parallel: int
    max_failures: Share
    soak: float
    gate: str
    on_failure: str
    checks: tuple[str, ...]
    targets: tuple[str, ...]
    review: str = "none"  # none | plans: a wave's plans are reviewed before its applies
    #: ``manual``: an approval before the channel's first wave (``gate`` is the one after a wave)
    entry: str = "auto"
    #: distinct people each manual approval of this channel (entry or gate) needs
    approvers: int = 1
    #: rear guard: seconds a passed wave's checks keep being sampled while later waves run
    watch_after: float = 0.0


@dataclass(frozen=True)
class Target:
    """One thing the change is applied to (an environment, cluster, account, host)."""

    name: str
    channel: str
    executor: str
    vars: Mapping[str, str] = field(hash=False)
    dashboard: str | None
    modules: tuple[str, ...] | None
    #: other names the target goes by in IaC addresses (normalised away in plan previews)
    aliases: tuple[str, ...] = ()

    def runs(self, module: str) -> bool:
        return self.modules is None or module in self.modules


@dataclass(frozen=True)
class ExecutorSpec:
    """How applies run: ``kind`` plus the kind's validated settings."""

    name: str
    kind: str
    settings: Mapping[str, Any] = field(hash=False)


@dataclass(frozen=True)
class CheckSpec:
    """A health check: where its value comes from and what counts as healthy."""

    name: str
    source: str
    max: float | None
    min: float | None
    max_increase: float | None
    interval: float
    failure_limit: int
    inconclusive_limit: int
    consecutive_error_limit: int
    baseline: str
    timeout: float
    settings: Mapping[str, Any] = field(hash=False)
    compare: str = "threshold"  # threshold | mann-whitney
    alpha: float = 0.05


@dataclass(frozen=True)
class Module:
    name: str
    versions: tuple[str, ...]
    initial: str


@dataclass(frozen=True)
class Regression:
    """Simulation: ``metric`` is ``factor`` times worse on ``module@version`` in ``channels``."""

    module: str
    version: str
    metric: str
    channels: tuple[str, ...]
    factor: float
    after: float = 0.0  # seconds after a target started running the version


@dataclass(frozen=True)
class Notifier:
    url: str
    format: str
    events: tuple[str, ...]
    headers: Mapping[str, str] = field(hash=False)
    timeout: float = 5.0
    retries: int = 3
