"""The check-source protocol: a source only *reads* a number; the gate (sluice.engine.rollout.gate) judges it.

A source turns one target's check into a :class:`Reading`: a value, no data (``value is None``,
inconclusive) or an error (the source failed). NaN and ±Inf are no data. Sources never raise
except ``CancelledError``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from sluice.engine.model.template import Context

if TYPE_CHECKING:
    from sluice.engine.model.estate import CheckSpec, Estate
    from sluice.engine.support.clock import Clock
    from sluice.engine.support.resources import Resources


@dataclass(frozen=True)
class Reading:
    """One measurement: ``value``, or no data (``None``), or ``error``.

    ``breach`` is set when the source itself judged the measurement unhealthy against a bound
    only it can see (an HTTP probe's wrong status or ``max_latency``): the gate counts it as a
    fail. Such a reading carries ``value=None``, so a gate that ignores ``breach`` still never
    passes it (it is no data there).
    """

    value: float | None = None
    error: str | None = None
    detail: str = ""
    breach: str | None = None


class CheckSource(Protocol):
    async def measure(self, ctx: Context) -> Reading:
        """The current value for ``ctx.target`` (``ctx.version`` is what it runs now)."""
        ...

    async def baseline(self, ctx: Context) -> Reading:
        """The value before the wave (Prometheus: the median over ``baseline_window``)."""
        ...

    async def close(self) -> None: ...


CHECK_SOURCES = {
    "simulated": "sluice.engine.checks.simulated:SimulatedCheck",
    "prometheus": "sluice.engine.checks.prometheus:PrometheusCheck",
    "http": "sluice.engine.checks.http:HttpCheck",
}


def create_check(
    spec: CheckSpec, estate: Estate, clock: Clock, resources: Resources
) -> CheckSource:
    """Instantiate the source for ``spec`` (``cls(spec, estate, clock, resources)``)."""
    module_name, _, class_name = CHECK_SOURCES[spec.source].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    source: CheckSource = cls(spec, estate, clock, resources)
    return source
