"""A rollout whose history can no longer be written stops, cleanly.

History is the source of truth: an apply it cannot record must not start. When the recorder
reports a failed write (disk full, a file-size limit, a read-only or immutable file, the file
deleted), the guard stops new applies at once, lets the in-flight ones run to their end, then
ends the rollout (outcome ``history_failed``, exit 7) and words the one line sluice prints.
"""

from __future__ import annotations

from pathlib import Path

from sluice.engine.rollout.events import ApplyFinished, Event
from sluice.engine.rollout.orchestrator import Rollout
from sluice.engine.rollout.state import APPLYING, ROLLING_BACK
from sluice.engine.store.recorder import Recorder


class HistoryGuard:
    """Watches ``recorder`` for ``rollout``; :attr:`message` is set once a write failed."""

    def __init__(self, rollout: Rollout, recorder: Recorder, path: Path | str):
        self.rollout = rollout
        self.recorder = recorder
        self.path = path
        self.message: str | None = None
        self._unfinished: list[str] = []
        recorder.on_failure = self._failed
        rollout.jobs.launch_guard = recorder.may_launch
        rollout.jobs.recorded = recorder.recorded
        rollout.bus.listen(self._follow)

    def _failed(self, why: str) -> None:
        self._why = why
        self._stop()

    def _follow(self, event: Event) -> None:
        if self.recorder.failure is not None and isinstance(event, ApplyFinished):
            self._stop()  # one fewer in flight: the rollout ends once none is left

    def _stop(self) -> None:
        # In flight: recorded as started and still running. A target whose start could not be
        # recorded is not: it is never launched (JobRunner.refusal).
        running = any(
            state.status in (APPLYING, ROLLING_BACK) and name in self.recorder.unfinished
            for name, state in self.rollout.targets.items()
        )
        self.rollout.stop_unrecorded(f"the history cannot be written: {self._why}", running)
        self._compose()

    def _compose(self) -> None:
        names = list(self.recorder.unfinished)
        count = len(names)
        head = f"cannot write the history {self.path}: {self._why} — "
        if not count:
            self.message = head + "no apply was in flight; nothing recorded before is lost"
            return
        plural = "applies were" if count != 1 else "apply was"
        shown = ", ".join(names[:10]) + (f" and {count - 10} more" if count > 10 else "")
        after = (
            "history is gone, so check these targets by hand"
            if "deleted" in self._why or "replaced" in self._why
            else "history shows them as started, so `sluice resume` re-applies them"
        )
        self.message = (
            f"{head}{count} {plural} in flight ({shown}), see their lines above: no new apply "
            f"started; {after}"
        )
