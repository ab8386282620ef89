"""What the console derives from its model's state (no textual here): elapsed time, ETA,
countdowns, counts and the series of a wave.

:class:`ModelQueries` is the base of :class:`~sluice.tui.model.ConsoleModel`, which folds the
events into the attributes declared here; these methods only read them.
"""

from __future__ import annotations

from collections.abc import Callable

from sluice.engine.model.estate import Estate
from sluice.tui.views import WAITING_STATES, WAVE_DONE, Series, TargetView, WaveView


class ModelQueries:
    """Reads of the console model's state (see :class:`~sluice.tui.model.ConsoleModel`)."""

    estate: Estate
    now: Callable[[], float]
    estimates: bool
    time_scale: float
    rollout_id: int | None
    outcome: str
    state: str
    started: float | None
    finished: float | None
    waves: dict[int, WaveView]
    targets: dict[str, TargetView]
    series: dict[tuple[int, str, str], Series]

    def targets_of_channel(self, channel: str) -> list[TargetView]:
        return [t for t in self.targets.values() if t.channel == channel]

    def running(self) -> bool:
        return self.rollout_id is not None and not self.outcome

    def elapsed(self) -> float | None:
        if self.started is None:
            return None
        end = self.finished if self.finished is not None else self.now()
        return max(0.0, end - self.started)

    def eta(self) -> float | None:
        """Real seconds left if every gate passes on its own; None while waiting on the operator."""
        if not self.running() or self.state in WAITING_STATES or self.state == "paused":
            return None
        if not self.estimates:
            return None
        left = 0.0
        for wave in self.waves.values():
            if wave.status in WAVE_DONE:
                continue
            if wave.status == "pending":
                left += wave.expected * self.time_scale
            elif wave.started is not None:
                spent = self.now() - wave.started
                left += max(0.0, wave.expected * self.time_scale - spent)
        return left

    def soak_left(self, wave: WaveView) -> float | None:
        if wave.status != "soaking" or wave.soak_started is None:
            return None
        return max(0.0, wave.soak_seconds - (self.now() - wave.soak_started))

    def watch_left(self, wave: WaveView) -> float | None:
        """Rear guard: the real seconds this passed wave is still watched for (None: not watched)."""
        if wave.watch_started is None or wave.watch_outcome or self.finished is not None:
            return None
        return max(0.0, wave.watch_seconds - (self.now() - wave.watch_started))

    def counts(self, wave: WaveView) -> dict[str, int]:
        counts: dict[str, int] = {}
        for name in wave.targets:
            status = self.targets[name].status if name in self.targets else "pending"
            counts[status] = counts.get(status, 0) + 1
        return counts

    def channel_counts(self, channel: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.targets_of_channel(channel):
            counts[t.status] = counts.get(t.status, 0) + 1
        return counts

    def wave_series(self, wave: int, check: str) -> list[tuple[str, Series]]:
        return [
            (target, s)
            for (w, c, target), s in self.series.items()
            if w == wave and c == check and s is not None
        ]

    def checks_of(self, wave: WaveView) -> tuple[str, ...]:
        if wave.checks:
            return wave.checks
        channel = next((c for c in self.estate.channels if c.name == wave.channel), None)
        return channel.checks if channel else ()
