"""What the console shows, rebuilt from the event stream alone (no textual here).

Live rollouts and replays feed the same :class:`ConsoleModel` with the same events, so a
replayed rollout is drawn exactly like a live one. Applying an event only updates plain data and
marks what changed in :attr:`ConsoleModel.dirty`; the widgets read and clear that at most once a
frame, which is how output lines and metric samples arriving hundreds per second are coalesced.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from sluice.engine.app.printers import TextPrinter
from sluice.engine.executors.tofu_plan import progress_of
from sluice.engine.model.estate import Estate
from sluice.engine.rollout.events import (
    ApplyAdopted,
    ApplyFinished,
    ApplyOutput,
    ApplyStarted,
    Event,
    GateEvaluated,
    Lagged,
    RolloutFinished,
    RolloutStarted,
    SampleTaken,
    SoakStarted,
    StateChanged,
    WatchEnded,
    WatchStarted,
    WaveFinished,
    WaveStarted,
)
from sluice.tui.model_queries import ModelQueries
from sluice.tui.views import (
    APPLY_OUTCOME_STATUS,
    EVENT_LOG_LINES,
    WAITING_STATES,
    WAVE_SETTLED,
    Dirty,
    Limits,
    Series,
    TargetView,
    WaveView,
    clock_text,
)


class ConsoleModel(ModelQueries):
    """The console's state for one estate and (at most) one rollout at a time.

    Args:
        estate: gives the channel order, the idle tree and the checks' thresholds.
        now: the clock the header's elapsed time, the ETA and the soak countdown read (the
            engine clock's ``now`` live; the replay's position in a replay). Events are timed
            by their own ``ts``, so a replay and the live run it recorded say the same.
        time_scale: the engine's time scale, so the ETA is in real seconds.
        current: each target's current version (the ledger) for the idle tree.
        estimates: tell an ETA (a replay cannot: it does not know the recording's time scale).
    """

    def __init__(
        self,
        estate: Estate,
        *,
        now: Callable[[], float],
        time_scale: float = 1.0,
        current: dict[str, str] | None = None,
        module: str | None = None,
        estimates: bool = True,
    ):
        self.estate = estate
        self.now = now
        #: whether an ETA can be told (not in a replay: the recording's time scale is unknown)
        self.estimates = estimates
        self._at = 0.0  # the time of the event being folded in (its recorded ``ts``)
        self.time_scale = time_scale
        self.limits = {
            name: Limits(spec.max, spec.min, spec.max_increase)
            for name, spec in estate.checks.items()
        }
        self.printer = TextPrinter()
        self.dirty = Dirty(structure=True)
        self.event_log: deque[str] = deque(maxlen=EVENT_LOG_LINES)
        #: lines ever appended to ``event_log`` (the log widget appends only those it lacks)
        self.events_written = 0
        self.lagged = 0
        self.reset_idle(current or {}, module)

    # ------------------------------------------------------------------ structure

    def reset_idle(self, current: dict[str, str], module: str | None = None) -> None:
        """No rollout: channels → targets at their current versions."""
        self.module = module or next(iter(self.estate.modules), "")
        initial = self.estate.modules[self.module].initial if self.module else ""
        self.rollout_id: int | None = None
        self.version = ""
        self.from_text = ""
        self.actor = ""
        self.state = "idle"
        self.detail = ""
        self.current_wave: int | None = None
        self.started: float | None = None
        self.finished: float | None = None
        self.outcome = ""
        self.exit_code: int | None = None
        self.waves: dict[int, WaveView] = {}
        self.series: dict[tuple[int, str, str], Series] = {}
        self.targets = {
            name: TargetView(name, t.channel, version=current.get(name, initial))
            for name, t in self.estate.targets.items()
            if not self.module or t.runs(self.module)
        }
        self._mark_drift()
        self.dirty = Dirty(structure=True)

    def _mark_drift(self) -> None:
        """Each target's last `sluice drift` result for this module (when not in sync)."""
        from sluice.engine.app.iac import last_drift  # a small file read; the tofu code on demand

        for name, result in last_drift(self.estate, self.module).items():
            if name in self.targets:
                self.targets[name].drift = result

    def channels(self) -> list[str]:
        return [c.name for c in self.estate.channels]

    def waves_of(self, channel: str) -> list[WaveView]:
        return [w for w in self.waves.values() if w.channel == channel]

    # ------------------------------------------------------------------ events

    def apply_all(self, items: Iterable[Event | Lagged]) -> None:
        for item in items:
            self.apply(item)

    def apply(self, item: Event | Lagged) -> None:
        """Fold one event (or a ``Lagged`` marker) into the model."""
        if isinstance(item, Lagged):
            self.lagged += item.dropped
            self._log(f"! the console fell behind and skipped {item.dropped} events")
            return
        self._at = item.ts
        handler = self._handlers.get(type(item))
        if handler is not None:
            handler(self, item)
        line = self.printer.format(item)
        if line is not None:
            for part in line.split("\n"):
                self._log(self._stamp(item) + part)

    def _stamp(self, event: Event) -> str:
        if self.started is None:
            return ""
        return f"{clock_text(max(0.0, self._at - self.started))} "

    def _log(self, line: str) -> None:
        self.event_log.append(line)
        self.events_written += 1
        self.dirty.log = True

    def _started(self, e: RolloutStarted) -> None:
        if e.resumed and e.rollout_id == self.rollout_id and self.waves:
            # Resuming what we already show (its history was loaded first): keep it all.
            self.state, self.outcome, self.finished, self.exit_code = "running", "", None, None
            self.dirty.structure = True
            return
        plan = e.plan
        self.rollout_id = e.rollout_id
        self.module = e.module
        self.version = e.version
        self.actor = e.actor
        self.state = "running"
        self.detail = ""
        self.outcome = ""
        self.exit_code = None
        self.finished = None
        self.current_wave = None
        if self.started is None or not e.resumed:
            self.started = self._at
        self.waves = {}
        self.series = {}
        self.targets = {}
        froms: set[str] = set()
        for w in plan.get("waves", []):
            names = [t["name"] for t in w["targets"]]
            self.waves[w["number"]] = WaveView(
                number=w["number"],
                name=w["name"],
                channel=w["channel"],
                gate=w.get("gate", "auto"),
                targets=names,
                budget=int(w.get("failure_budget", 0)),
                soak=float(w.get("soak_seconds", 0.0)),
                expected=float(w.get("expected_seconds", 0.0)),
                blast_radius=float(w.get("blast_radius", 0.0)),
            )
            for t in w["targets"]:
                noop = bool(t.get("noop"))
                if not noop:
                    froms.add(t["from"])
                self.targets[t["name"]] = TargetView(
                    t["name"],
                    w["channel"],
                    wave=w["number"],
                    status="noop" if noop else "pending",
                    version=t["from"],
                    from_version=t["from"],
                    to_version=t["to"],
                )
        self.from_text = ",".join(sorted(froms)) or e.version
        self._mark_drift()
        self.dirty.structure = True

    def _state(self, e: StateChanged) -> None:
        self.state = e.state
        self.detail = e.detail
        wave = self.waves.get(e.wave) if e.wave is not None else None
        # A finished wave keeps its status: rolling back one of its targets later reports the
        # rollout's state with that wave's number, but the wave itself is not halted again.
        if wave is not None and e.state in WAITING_STATES and wave.status not in WAVE_SETTLED:
            wave.status = e.state
            wave.detail = e.detail
            self.dirty.waves.add(wave.number)

    def _wave_started(self, e: WaveStarted) -> None:
        self.current_wave = e.wave
        wave = self.waves.get(e.wave)
        if wave is not None:
            wave.status = "applying"
            wave.started = self._at
            self.dirty.waves.add(e.wave)

    def _apply_started(self, e: ApplyStarted) -> None:
        target = self._target(e.target, e.wave)
        target.status = "rolling_back" if e.action == "rollback" else "applying"
        target.action = e.action
        target.reason = ""
        target.duration = None
        target.progress = ""
        self._output(target, "meta", f"── {e.action} {e.from_version} → {e.version}")
        if e.command:
            self._output(target, "meta", f"$ {e.command}")
        self._touch_target(target)

    def _apply_adopted(self, e: ApplyAdopted) -> None:
        """A resume adopted an apply a stopped sluice left (running, or finished meanwhile)."""
        target = self._target(e.target, e.wave)
        target.status = "rolling_back" if e.action == "rollback" else "applying"
        target.action = e.action
        target.reason = ""
        what = "re-attached to it, still running" if e.how == "running" else "it finished meanwhile"
        self._output(
            target, "meta", f"── adopted {e.action} {e.from_version} → {e.version}: {what}"
        )
        self._touch_target(target)

    def _apply_output(self, e: ApplyOutput) -> None:
        target = self.targets.get(e.target)
        if target is not None:
            self._output(target, e.stream, e.line)
            if e.line.startswith("[") and (progress := progress_of(e.line)):
                target.progress = progress  # "3/5 resources", from a tofu apply's JSON stream
                self._touch_target(target)

    def _apply_finished(self, e: ApplyFinished) -> None:
        target = self._target(e.target, e.wave)
        status = APPLY_OUTCOME_STATUS.get(e.outcome, e.outcome)
        if e.outcome == "ok":
            target.version = e.version
            if e.action == "rollback":
                status = "rolled_back"
        target.status = status
        target.duration = e.duration
        target.reason = e.reason
        self._output(
            target, "meta", f"── {e.action} {e.outcome}" + (f": {e.reason}" if e.reason else "")
        )
        self._touch_target(target)

    def _soak_started(self, e: SoakStarted) -> None:
        wave = self.waves.get(e.wave)
        if wave is not None:
            wave.status = "soaking"
            wave.soak_started = self._at
            wave.soak_seconds = e.seconds
            wave.checks = tuple(e.checks)
            self.dirty.waves.add(e.wave)

    def _sample(self, e: SampleTaken) -> None:
        if e.phase == "control":
            return
        series = self.series.setdefault((e.wave, e.check, e.target), Series())
        if e.phase == "baseline":
            series.baseline = e.value
        else:
            series.values.append(e.value)
            series.outcomes.append(e.outcome)
            if e.baseline is not None:
                series.baseline = e.baseline
        self.dirty.metrics.add(e.wave)

    def _gate(self, e: GateEvaluated) -> None:
        wave = self.waves.get(e.wave)
        if wave is not None:
            wave.verdict = e.verdict
            wave.reasons = tuple(e.reasons)
            wave.gate_checks = dict(e.checks)
            wave.early = e.early
            self.dirty.waves.add(e.wave)
            self.dirty.metrics.add(e.wave)

    def _watch_started(self, e: WatchStarted) -> None:
        wave = self.waves.get(e.wave)
        if wave is not None:
            wave.watch_started, wave.watch_seconds, wave.watch_outcome = self._at, e.seconds, ""
            self.dirty.waves.add(e.wave)

    def _watch_ended(self, e: WatchEnded) -> None:
        wave = self.waves.get(e.wave)
        if wave is not None:
            wave.watch_outcome = e.outcome
            if e.outcome == "regressed":
                wave.detail = e.detail
            self.dirty.waves.add(e.wave)

    def _wave_finished(self, e: WaveFinished) -> None:
        wave = self.waves.get(e.wave)
        if wave is not None:
            wave.status = e.outcome
            self.dirty.waves.add(e.wave)

    def _finished(self, e: RolloutFinished) -> None:
        self.outcome = e.outcome
        self.exit_code = e.exit_code
        self.finished = self._at
        self.state = e.outcome
        self.detail = e.summary
        self.dirty.waves.update(self.waves)  # their hints ("press a", "n starts…") end here

    def crashed(self, message: str) -> None:
        """A failure outside the engine's stream (the console's own task): say so as an end."""
        self.state = self.outcome = "crashed"
        self.detail = message
        self._log(f"! {message}")
        self.dirty.waves.update(self.waves)

    _handlers: dict[type, Callable[[ConsoleModel, Any], None]] = {
        RolloutStarted: _started,
        StateChanged: _state,
        WaveStarted: _wave_started,
        ApplyStarted: _apply_started,
        ApplyAdopted: _apply_adopted,
        ApplyOutput: _apply_output,
        ApplyFinished: _apply_finished,
        SoakStarted: _soak_started,
        SampleTaken: _sample,
        GateEvaluated: _gate,
        WaveFinished: _wave_finished,
        WatchStarted: _watch_started,
        WatchEnded: _watch_ended,
        RolloutFinished: _finished,
    }

    def _target(self, name: str, wave: int) -> TargetView:
        target = self.targets.get(name)
        if target is None:  # not in the plan we know of (a rollback-only run): add it
            spec = self.estate.targets.get(name)
            target = TargetView(name, spec.channel if spec else "?", wave=wave)
            self.targets[name] = target
            self.dirty.structure = True
        return target

    def _output(self, target: TargetView, stream: str, line: str) -> None:
        target.output.append((stream, line))
        target.written += 1
        self.dirty.output.add(target.name)

    def _touch_target(self, target: TargetView) -> None:
        self.dirty.targets.add(target.name)
        if target.wave is not None:
            self.dirty.waves.add(target.wave)

    def sync(self, targets: dict[str, Any]) -> None:
        """Copy authoritative target state from a live rollout (after a resume or a lag)."""
        for name, state in targets.items():
            view = self.targets.get(name)
            if view is None:
                continue
            view.status, view.version = state.status, state.version
            view.duration = state.duration or view.duration
            view.reason = state.reason
            self._touch_target(view)

    def take_dirty(self) -> Dirty:
        dirty, self.dirty = self.dirty, Dirty()
        return dirty
