"""Outcome words that cannot be misread: what a rollout's recorded outcome means, said in full.

A rollout halted, rolled back and then replaced by the next version is not "aborted": it is
recorded ``superseded`` (its summary names the version that replaced it), and shown
"superseded by #N", N being the next rollout of the same module.
"""

from __future__ import annotations

from collections.abc import Iterable

from sluice.engine.store.history import RolloutRecord

#: How sluice before the ``superseded`` outcome recorded such an abort (its summary).
_OLD_SUPERSEDED = ": superseded by "


def is_superseded(record: RolloutRecord) -> bool:
    if record.outcome == "superseded":
        return True
    return record.outcome == "aborted" and _OLD_SUPERSEDED in (record.summary or "")


def superseded_by(record: RolloutRecord, records: Iterable[RolloutRecord]) -> int | None:
    """The id of the rollout that replaced ``record`` (the next of its module), if any."""
    if not is_superseded(record):
        return None
    later = [
        r.id
        for r in records
        if r.id > record.id and r.kind == record.kind and r.module == record.module
    ]
    return min(later) if later else None


def outcome_text(record: RolloutRecord, records: Iterable[RolloutRecord]) -> str:
    """``done``, ``halted``…, or ``superseded by #2``."""
    if is_superseded(record):
        by = superseded_by(record, records)
        return f"superseded by #{by}" if by is not None else "superseded"
    return record.outcome
