"""The stored form of the event stream, decoded: a row of ``event_log`` (its fields as JSON) or
of ``samples`` (its fields in columns) back to its :class:`~sluice.engine.rollout.events.Event`."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from sluice.engine.rollout.events import (
    _KINDS as EVENT_KINDS,
)  # kind → class (events.py has no public name)
from sluice.engine.rollout.events import Event, SampleTaken

#: One recorded event, undecoded: ``(seq, ts, kind, data)`` with its other fields as JSON in
#: ``data`` (an ``event_log`` row), or ``(seq, ts, "sample", wave, check, target, phase, value,
#: baseline, outcome, reason)`` (a ``samples`` row). Either way ``row[0]`` is the seq, ``row[1]``
#: the timestamp and ``row[2]`` the kind.
EventRow = tuple[Any, ...]


def _tuplify(value: Any) -> Any:
    """JSON arrays back to the tuples events hold (as :func:`sluice.engine.rollout.events.event_from_dict`)."""
    return tuple(_tuplify(v) for v in value) if type(value) is list else value


class _Decoder:
    """Rebuilds events from rows; the class and field names of each kind are looked up once."""

    def __init__(self) -> None:
        self._kinds: dict[str, tuple[type[Event], frozenset[str]] | None] = {}

    def _kind(self, kind: str) -> tuple[type[Event], frozenset[str]] | None:
        if kind not in self._kinds:
            cls = EVENT_KINDS.get(kind)
            self._kinds[kind] = (
                None
                if cls is None
                else (cls, frozenset(f.name for f in dataclasses.fields(cls)) - {"seq", "ts"})
            )
        return self._kinds[kind]

    def __call__(self, seq: int, ts: float, kind: str, payload: dict[str, Any]) -> Event | None:
        known = self._kind(kind)
        if known is None:  # written by a newer sluice, or an event kind since removed
            return None
        cls, names = known
        values = {k: _tuplify(v) for k, v in payload.items() if k in names}
        return cls(seq=seq, ts=ts, **values)


def known_kind(kind: str) -> bool:
    """Whether events of ``kind`` can be decoded by this sluice."""
    return kind in EVENT_KINDS


def _sample(row: EventRow) -> SampleTaken:
    seq, ts, _, wave, check, target, phase, value, baseline, outcome, reason = row
    return SampleTaken(
        seq=seq, ts=ts, wave=wave, check=check, target=target, phase=phase, value=value,
        baseline=baseline, outcome=outcome, reason=reason,
    )  # fmt: skip


def decode_event(row: EventRow) -> Event | None:
    """One row → its event (``None`` for a kind this sluice does not know)."""
    if len(row) != 4:
        return _sample(row)
    seq, ts, kind, data = row
    return _decode(seq, ts, kind, json.loads(data))


def decode_events(rows: Sequence[EventRow]) -> list[Event]:
    """Rows → events, in order. The JSON of all rows is parsed in one ``json.loads`` call (half
    the cost of one call per row); samples are built from their columns."""
    texts = [row[3] for row in rows if len(row) == 4]
    payloads = iter(json.loads("[" + ",".join(texts) + "]") if texts else [])
    events: list[Event] = []
    for row in rows:
        if len(row) != 4:
            events.append(_sample(row))
            continue
        event = _decode(row[0], row[1], row[2], next(payloads))
        if event is not None:
            events.append(event)
    return events


_decode = _Decoder()
