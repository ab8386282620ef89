"""``sluice backtest``: re-judge a recorded rollout's measurements with today's (or other) checks.

It only reads history. Each recorded wave's samples — its baselines, its control group, its soak
measurements, in the order they were taken — go through a fresh :class:`Gate` built from the
checks the estate defines *now* for that wave's channel. Per wave the recorded verdict stands
beside the new one, with the first measurement judged differently and when in the soak it was
taken, and one line sums it up.

Never invented: a check the new estate runs but the recording has no samples of is reported
*missing* (the wave's new verdict is then only as good as the checks that were measured); a
soak the recording ended early (a halt) has no later measurements, so a new verdict that would
need them is "undecided"; a wave the recorded rollout never reached is "not run".

Elapsed times are estate time: the measurement's round × the check's ``interval``, so a rollout
recorded at any ``--time-scale`` reads like one at full speed. A wave that was resumed is judged
on its last run (the one its recorded verdict came from); rear-guard (``watch``) samples are not
re-judged.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from sluice.engine.checks.base import Reading
from sluice.engine.model.estate import CheckSpec, Estate
from sluice.engine.model.units import format_duration
from sluice.engine.rollout.events import GateEvaluated, SampleTaken, WaveStarted
from sluice.engine.rollout.gate import Gate
from sluice.engine.store.history import History, RolloutRecord

UNDECIDED, NOT_RUN = "undecided", "not run"


@dataclass
class Difference:
    """The first measurement judged differently."""

    check: str
    target: str
    value: float | None
    elapsed: float
    recorded: str
    new: str
    reason: str

    def text(self) -> str:
        value = "—" if self.value is None else f"{self.value:.4g}"
        why = f" ({self.reason})" if self.reason else ""
        return (
            f"{self.check} on {self.target} at {format_duration(self.elapsed)}: {value} "
            f"was {self.recorded}, now {self.new}{why}"
        )


@dataclass
class WaveBacktest:
    number: int
    name: str
    channel: str
    recorded: str  # the recorded verdict (or "not run")
    recorded_at: float | None  # estate seconds into the soak when it was reached
    new: str
    new_at: float | None
    reasons: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    first_difference: Difference | None = None

    @property
    def changed(self) -> bool:
        """Judged differently: another verdict, or the same one reached at another moment."""
        if self.recorded == NOT_RUN:
            return False
        return self.recorded != self.new or self.recorded_at != self.new_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "name": self.name,
            "channel": self.channel,
            "recorded": {"verdict": self.recorded, "decided_at": self.recorded_at},
            "new": {"verdict": self.new, "decided_at": self.new_at, "reasons": self.reasons},
            "changed": self.changed,
            "missing_checks": self.missing,
            "first_difference": None
            if self.first_difference is None
            else dict(self.first_difference.__dict__),
        }


@dataclass
class Backtest:
    rollout_id: int
    module: str
    version: str
    estate: str
    changes: list[str]
    waves: list[WaveBacktest]

    @property
    def changed(self) -> bool:
        return any(w.changed for w in self.waves)

    def summary(self) -> str:
        """One line: what changed in the checks and what it would have done."""
        head = f"with {'; '.join(self.changes)}" if self.changes else "with the same checks"
        said = []
        for w in self.waves:
            if not w.changed or w.new == w.recorded:
                continue
            what = f"wave {w.number} ({w.name})"
            if w.new == "failed":
                said.append(f"{what} would have halted at {_at(w.new_at)} instead of {w.recorded}")
            else:
                said.append(f"{what} would have been {w.new} instead of {w.recorded}")
        for w in self.waves:  # same verdict, reached at another moment
            if w.changed and w.recorded == w.new and None not in (w.new_at, w.recorded_at):
                delta = (w.recorded_at or 0.0) - (w.new_at or 0.0)
                when = "earlier" if delta > 0 else "later"
                what = "regression would have halted" if w.new == "failed" else "gate would have"
                said.append(
                    f"the {w.channel} {what} {w.new if w.new != 'failed' else ''}"
                    f"{format_duration(abs(delta))} {when}".replace("  ", " ")
                )
        run = [w for w in self.waves if w.recorded != NOT_RUN]
        same = [w for w in run if not w.changed]
        tail = f"{len(same)} of {len(run)} recorded waves judged the same" if said else ""
        if not said:
            return f"{head}: every recorded verdict unchanged ({len(run)} waves)"
        return f"{head}: {'; '.join(said)}; {tail}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "rollout_id": self.rollout_id,
            "module": self.module,
            "version": self.version,
            "estate": self.estate,
            "changes": self.changes,
            "changed": self.changed,
            "summary": self.summary(),
            "waves": [w.to_dict() for w in self.waves],
        }


def _at(seconds: float | None) -> str:
    return "—" if seconds is None else format_duration(seconds)


def _reading(sample: SampleTaken) -> Reading:
    if sample.outcome == "error":
        return Reading(error=sample.reason or "error")
    return Reading(value=sample.value, detail=sample.reason)


def _threshold_changes(recorded: dict[str, Any], estate: Estate, checks: set[str]) -> list[str]:
    """ "p99_latency max_increase 20% instead of 50%" for each bound that differs."""
    out = []
    for name in sorted(checks):
        old, spec = recorded.get(name), estate.checks.get(name)
        if spec is None:
            out.append(f"no {name} check")
            continue
        if old is None:
            out.append(f"a new {name} check")
            continue
        for key in ("max", "min", "max_increase", "failure_limit"):
            if key not in old:  # recorded by an older sluice: unknown, so not compared
                continue
            before, now = old.get(key), getattr(spec, key)
            if before != now:
                fmt = (
                    (lambda v: "none" if v is None else f"{v:.0%}")
                    if key == "max_increase"
                    else (lambda v: "none" if v is None else f"{v:g}")
                )
                out.append(f"{name} {key} {fmt(now)} instead of {fmt(before)}")
        if spec.compare != old.get("compare", "threshold"):
            out.append(
                f"{name} compare {spec.compare} instead of {old.get('compare', 'threshold')}"
            )
    return out


def _rejudge(
    wave: dict[str, Any],
    specs: list[CheckSpec],
    samples: list[SampleTaken],
    recorded_gate: GateEvaluated | None,
) -> WaveBacktest:
    """One recorded wave judged again by the checks ``specs`` its channel has now."""
    targets = [t["name"] for t in wave["targets"] if not t.get("noop")]
    measured = {s.check for s in samples if s.phase == "soak"}
    present = [s for s in specs if s.name in measured]
    missing = sorted(s.name for s in specs if s.name not in measured)
    replay = _Replay(Gate(present, targets))
    wanted = {s.name for s in present}
    for s in samples:
        if s.check in wanted and (s.target in targets or s.phase == "control"):
            replay.feed(s)
    verdict, new_at = replay.verdict, replay.new_at
    if verdict is None:
        verdict, new_at = _final_verdict(replay, present, recorded_gate), replay.recorded_at
    return WaveBacktest(
        number=wave["number"],
        name=wave["name"],
        channel=wave["channel"],
        recorded=recorded_gate.verdict if recorded_gate else UNDECIDED,
        recorded_at=replay.recorded_at if recorded_gate else None,
        new=verdict[0],
        new_at=new_at,
        reasons=list(verdict[1]),
        missing=missing,
        first_difference=replay.first,
    )


class _Replay:
    """A wave's recorded samples fed, in the order they were taken, through a fresh gate."""

    def __init__(self, gate: Gate):
        self.gate = gate
        self.rounds: dict[tuple[str, str], int] = {}
        self.control: dict[str, list[float]] = {}  # per check: control values of this round
        self.control_median: dict[str, float] = {}
        #: estate time of the last recorded soak measurement
        self.recorded_at: float | None = None
        #: the new gate's early verdict and when it came (``None``: it decided nothing early)
        self.verdict: tuple[str, list[str]] | None = None
        self.new_at: float | None = None
        self.first: Difference | None = None

    def feed(self, s: SampleTaken) -> None:
        if s.phase == "baseline":
            self.gate.set_baseline(s.check, s.target, s.value)
        elif s.phase == "control":
            if s.value is not None and s.outcome != "error":
                self.control.setdefault(s.check, []).append(s.value)
        elif s.phase == "soak":
            self._soak(s)

    def _soak(self, s: SampleTaken) -> None:
        spec = self.gate.checks[s.check]
        pending = self.control.pop(s.check, [])
        if pending:
            self.gate.add_control(s.check, pending)
            self.control_median[s.check] = statistics.median(pending)
        base = self.control_median.get(s.check) if spec.baseline == "control" else None
        key = (s.check, s.target)
        n = self.rounds[key] = self.rounds.get(key, 0) + 1
        elapsed = self.recorded_at = n * spec.interval
        if self.verdict is not None:
            return  # the new gate had decided already: later samples change nothing
        outcome, reason = self.gate.record(s.check, s.target, _reading(s), base)
        if self.first is None and outcome != s.outcome:
            self.first = Difference(s.check, s.target, s.value, elapsed, s.outcome, outcome, reason)
        early = self.gate.early_verdict()
        if early is not None:
            self.verdict, self.new_at = early, elapsed


def _final_verdict(
    replay: _Replay, present: list[CheckSpec], recorded_gate: GateEvaluated | None
) -> tuple[str, list[str]]:
    """The new verdict at the end of the recorded soak (the new gate decided nothing early)."""
    if not present:
        return UNDECIDED, ["no recorded samples of the checks this channel has now"]
    if (
        recorded_gate is not None
        and recorded_gate.early
        and recorded_gate.verdict in ("failed", "inconclusive")
    ):
        ended = _at(replay.recorded_at)
        return UNDECIDED, [f"the recorded soak ended early at {ended}: the rest was never measured"]
    return replay.gate.final_verdict()


def backtest(history: History, record: RolloutRecord, estate: Estate) -> Backtest:
    """Re-judge ``record``'s recorded measurements with ``estate``'s checks (reads only)."""
    samples: dict[int, list[SampleTaken]] = {}
    gates: dict[int, GateEvaluated] = {}
    for event in history.events(record.id):
        if isinstance(event, SampleTaken):
            samples.setdefault(event.wave, []).append(event)
        elif isinstance(event, GateEvaluated):
            gates[event.wave] = event  # a resumed wave's last gate is the one that counts
        elif isinstance(event, WaveStarted):
            # A wave started again (resumed) is judged on its last run only: its baselines are
            # emitted again, its soak starts over.
            samples[event.wave] = []
    recorded_checks: dict[str, Any] = {}
    for gate_event in gates.values():
        for name, data in gate_event.checks.items():
            recorded_checks.setdefault(name, data)
    waves = []
    used: set[str] = set(recorded_checks)
    for wave in record.plan.get("waves", []):
        channel = next((c for c in estate.channels if c.name == wave["channel"]), None)
        names = list(channel.checks) if channel else []
        used.update(names)
        specs = [estate.checks[n] for n in names if n in estate.checks]
        if wave["number"] not in gates and wave["number"] not in samples:
            waves.append(
                WaveBacktest(
                    wave["number"], wave["name"], wave["channel"], NOT_RUN, None, NOT_RUN, None
                )
            )
            continue
        waves.append(
            _rejudge(wave, specs, samples.get(wave["number"], []), gates.get(wave["number"]))
        )
    return Backtest(
        rollout_id=record.id,
        module=record.module,
        version=record.version,
        estate=str(estate.path),
        changes=_threshold_changes(recorded_checks, estate, used),
        waves=waves,
    )


def backtest_lines(result: Backtest) -> list[str]:
    """The text report: a line per wave, then the summary."""
    lines = [
        f"backtest of rollout #{result.rollout_id} ({result.module} → {result.version}) "
        f"with the checks of {result.estate}"
    ]
    for w in result.waves:
        if w.recorded == NOT_RUN:
            lines.append(f"  wave {w.number} {w.name}: not run in the recorded rollout")
            continue
        mark = "≠" if w.changed else "="
        lines.append(
            f"  {mark} wave {w.number} {w.name}: recorded {w.recorded} at {_at(w.recorded_at)}, "
            f"now {w.new} at {_at(w.new_at)}"
        )
        if w.first_difference is not None:
            lines.append(f"      first difference: {w.first_difference.text()}")
        for reason in w.reasons[:3] if w.changed else []:
            lines.append(f"      {reason}")
        if w.missing:
            lines.append(f"      missing: no recorded samples of {', '.join(w.missing)}")
    lines.append(result.summary())
    return lines
