"""Fail closed before a rollout is recorded when its applies cannot get file descriptors.

Every way a rollout starts — ``sluice run``/``resume``/``rollback``/``restore`` and the console's
``n`` — goes through here: the soft ``RLIMIT_NOFILE`` is raised to the hard one, then a plan
whose channel still cannot fit ``max_parallel`` applies is refused with one sentence naming the
channel and the ``max_parallel`` that would fit (:mod:`sluice.engine.support.descriptors`).
"""

from __future__ import annotations

from sluice.engine.model.estate import Estate
from sluice.engine.model.plan import Plan
from sluice.engine.support import descriptors


class NotEnoughDescriptors(Exception):
    """A rollout refused because its applies cannot get descriptors; nothing was recorded.

    Not an OSError: nothing here failed to write the history."""

    def __init__(self, problem: str):
        super().__init__(f"not started: {problem}")
        self.problem = problem


def shortfall(estate: Estate, plan: Plan | None = None) -> str | None:
    """The first channel of ``plan`` (all of the estate's without one) whose applies cannot fit
    the fd limit, as one sentence; None when all fit. Raises the soft limit first."""
    channels = {w.channel.name: w.channel for w in plan.waves} if plan else None
    limit = descriptors.raise_soft_limit()
    problems = descriptors.shortfalls(
        estate, channels.values() if channels is not None else estate.channels, limit
    )
    return problems[0] if problems else None


def require_descriptors(estate: Estate, plan: Plan | None = None) -> None:
    """Raise :class:`NotEnoughDescriptors` when :func:`shortfall` finds one."""
    problem = shortfall(estate, plan)
    if problem is not None:
        raise NotEnoughDescriptors(problem)
