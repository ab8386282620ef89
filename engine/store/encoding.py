"""How the recorder stores an event: the compact JSON of its fields (an encoder built once),
whether a check sample's numbers read back from a ``REAL`` column unchanged, and the statements
that insert the two tables of the stream."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from typing import Any

from sluice.engine.rollout.events import Event


def _make_encoder() -> Callable[[Any], str]:
    """A compact JSON encoder built once (``json.dumps`` builds one per call: half its cost).

    CPython's C encoder is reused directly when present: the same output as
    ``json.dumps(value, default=str, separators=(",", ":"))``.
    """
    try:
        from json.encoder import (  # type: ignore[attr-defined]
            c_make_encoder,
            encode_basestring_ascii,
        )
    except ImportError:  # pragma: no cover - not CPython
        c_make_encoder = None
    if c_make_encoder is None:  # pragma: no cover
        return json.JSONEncoder(default=str, separators=(",", ":")).encode
    # (markers, default, encode_str, indent, key_sep, item_sep, sort_keys, skipkeys, allow_nan);
    # no markers: events hold no cycles, and checking for them costs a dict per container.
    encoder = c_make_encoder(None, str, encode_basestring_ascii, None, ":", ",", False, False, True)
    join = "".join

    def encode(value: Any) -> str:
        return join(encoder(value, 0))

    return encode


encode = _make_encoder()


def exact(value: object) -> bool:
    """Whether a sample's ``value``/``baseline`` reads back from a REAL column unchanged.

    NaN would read back as NULL, an int as a float, and -0.0 as 0.0: such a sample (no check
    makes one today) is stored as JSON like any other event instead, with a samples row beside it.
    """
    if value is None:
        return True
    return (
        type(value) is float
        and math.isfinite(value)
        and (value != 0.0 or math.copysign(1.0, value) > 0)
    )


#: Event class → a function giving the fields stored in ``data`` (all but seq, ts and kind).
PAYLOADS: dict[type[Event], Callable[[Event], dict[str, Any]]] = {}
_COLUMNS = ("seq", "ts", "kind")


def payload_of(cls: type[Event]) -> Callable[[Event], dict[str, Any]]:
    getter = PAYLOADS.get(cls)
    if getter is None:
        if cls.to_dict is not Event.to_dict:  # a class with its own to_dict: use it

            def getter(event: Event) -> dict[str, Any]:
                data = event.to_dict()
                return {k: v for k, v in data.items() if k not in _COLUMNS}

        else:
            names = tuple(f.name for f in dataclasses.fields(cls) if f.name not in _COLUMNS)

            def getter(event: Event) -> dict[str, Any]:
                return {name: getattr(event, name) for name in names}

        PAYLOADS[cls] = getter
    return getter


#: The stream's two tables. ON CONFLICT: a retried transaction (its commit may have gone
#: through) skips the rows already there.
EVENT_SQL = (
    "INSERT INTO event_log (rollout_id, seq, ts, kind, data) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT DO NOTHING"
)
SAMPLE_SQL = (
    "INSERT INTO samples (rollout_id, seq, wave, check_name, target, phase, ts, value, "
    "baseline, outcome, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
_TABLES = {
    EVENT_SQL: ("event_log", "rollout_id, seq, ts, kind, data"),
    SAMPLE_SQL: (
        "samples",
        "rollout_id, seq, wave, check_name, target, phase, ts, value, baseline, outcome, reason",
    ),
}


def appender(db: Any) -> Callable[[str, list[tuple[Any, ...]]], None]:
    """``db.executemany``, as :meth:`~sluice.engine.store.backend.Database.append` does it."""

    def append(sql: str, rows: list[tuple[Any, ...]]) -> None:
        table, columns = _TABLES[sql]
        db.append(sql, table, columns, rows)

    return append
