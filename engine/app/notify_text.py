"""What a webhook notification says: which events notify (by ``[[notify]] events`` name), the
sentence for each, and the JSON body (:mod:`sluice.engine.app.notify` delivers them).

Notification names (``events = [...]``) and the events they come from:

=================== ==========================================================================
wave_done           ``WaveFinished`` (passed, approved, bypassed, rolled_back, skipped)
gate_failed         ``GateEvaluated`` with verdict ``failed``
gate_inconclusive   ``GateEvaluated`` with verdict ``inconclusive``
awaiting_approval   ``StateChanged`` to ``awaiting_approval`` or ``awaiting_entry``
rollout_finished    ``RolloutFinished``
bypass              ``OperatorAction`` ``bypass`` or ``bypass_window``
=================== ==========================================================================
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sluice.engine.rollout.events import (
    Event,
    GateEvaluated,
    OperatorAction,
    RolloutFinished,
    RolloutStarted,
    StateChanged,
    WaveFinished,
    WaveStarted,
)

if TYPE_CHECKING:
    from sluice.engine.model.estate import Notifier

#: How many gate reasons a message quotes.
REASONS_SHOWN = 3

_WAVE_DONE_WORDS = {
    "passed": "passed its gate",
    "approved": "was approved",
    "bypassed": "was bypassed",
    "rolled_back": "was rolled back",
    "skipped": "was skipped",
}


def notification_name(event: Event) -> str | None:
    """The ``[[notify]] events`` name ``event`` triggers, or None."""
    if isinstance(event, WaveFinished):
        # A failed or inconclusive wave is told by its gate_failed / gate_inconclusive.
        return "wave_done" if event.outcome in _WAVE_DONE_WORDS else None
    if isinstance(event, GateEvaluated):
        return {"failed": "gate_failed", "inconclusive": "gate_inconclusive"}.get(event.verdict)
    if isinstance(event, StateChanged):
        waiting = event.state in ("awaiting_approval", "awaiting_entry")  # a gate or an entry
        return "awaiting_approval" if waiting else None
    if isinstance(event, RolloutFinished):
        return "rollout_finished"
    if isinstance(event, OperatorAction):
        return "bypass" if event.action in ("bypass", "bypass_window") else None
    return None


@dataclass
class Story:
    """What the messages need to know from earlier events: which rollout, which waves."""

    estate: str = ""
    rollout_id: int | None = None
    module: str = ""
    version: str = ""
    waves: dict[int, str] = field(default_factory=dict)

    def follow(self, event: Event) -> None:
        if isinstance(event, RolloutStarted):
            self.estate, self.rollout_id = event.estate, event.rollout_id
            self.module, self.version = event.module, event.version
        elif isinstance(event, WaveStarted):
            self.waves[event.wave] = event.name or event.channel
        elif isinstance(event, RolloutFinished) and self.rollout_id is None:
            self.rollout_id = event.rollout_id

    def prefix(self) -> str:
        number = f"rollout #{self.rollout_id}" if self.rollout_id is not None else "rollout"
        what = f"{self.module}@{self.version} ({number})" if self.module else number
        return f"[{self.estate}] {what}" if self.estate else what

    def wave(self, number: int | None) -> str:
        if number is None:
            return "the rollout"
        name = self.waves.get(number)
        return f"wave {number} ({name})" if name else f"wave {number}"


def message(name: str, event: Event, story: Story) -> str:
    """The human sentence for one notification."""
    head = story.prefix()
    if isinstance(event, WaveFinished):
        return f"{head}: {story.wave(event.wave)} {_WAVE_DONE_WORDS[event.outcome]}"
    if isinstance(event, GateEvaluated):
        shown = "; ".join(event.reasons[:REASONS_SHOWN])
        more = len(event.reasons) - REASONS_SHOWN
        shown += f" (and {more} more)" if more > 0 else ""
        what = "FAILED" if name == "gate_failed" else "inconclusive: the operator decides"
        return f"{head}: {story.wave(event.wave)} gate {what}" + (f": {shown}" if shown else "")
    if isinstance(event, StateChanged):
        return f"{head}: {story.wave(event.wave)} is healthy and awaits approval"
    if isinstance(event, RolloutFinished):
        return f"{head}: rollout {event.outcome}" + (f": {event.summary}" if event.summary else "")
    if isinstance(event, OperatorAction):
        where = event.target or story.wave(event.wave)
        why = f": {event.reason}" if event.reason else ""
        return f"{head}: {event.actor} bypassed {where}{why}"
    return f"{head}: {name}"


def payload(notifier: Notifier, name: str, event: Event, story: Story) -> dict[str, Any]:
    """The JSON body: Slack's ``{"text": …}``, or a generic event with the text and the event."""
    text = message(name, event, story)
    if notifier.format == "slack":
        return {"text": text}
    return {
        "event": name,
        "text": text,
        "estate": story.estate,
        "rollout_id": story.rollout_id,
        "module": story.module,
        "version": story.version,
        "data": _jsonable(event.to_dict()),
    }


def _jsonable(value: Any) -> Any:
    """Strict JSON: NaN and ±Inf (which ``json`` would write as bare words) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
