"""Test helpers that read a history's rows as they are stored (sluice itself decodes them to
events: ``sluice.engine.store.event_rows``)."""

from __future__ import annotations

import json
from typing import Any

from sluice.engine.store.event_rows import EventRow
from sluice.engine.store.history import History

#: The fields of a ``samples`` row after its seq, ts and kind (``History.event_rows``' order).
_SAMPLE_FIELDS = ("wave", "check", "target", "phase", "value", "baseline", "outcome", "reason")


def _event_dict(seq: int, ts: float, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The :meth:`Event.to_dict` form of a row (older rows also hold seq/ts/kind in ``data``)."""
    return {"kind": kind, "seq": seq, "ts": ts, **payload}


def row_dict(row: EventRow) -> dict[str, Any]:
    """One row → the :meth:`Event.to_dict` form of its event (unknown kinds too)."""
    if len(row) != 4:
        fields = dict(zip(_SAMPLE_FIELDS, row[3:], strict=True))
        return {"kind": row[2], "seq": row[0], "ts": row[1], **fields}
    seq, ts, kind, data = row
    return _event_dict(seq, ts, kind, json.loads(data))


def schema_version(history: History) -> int:
    """The newest schema version recorded in ``history``."""
    return int(history.db.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])
