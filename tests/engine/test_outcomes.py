"""Outcome words: a rollout replaced by the next one reads "superseded by #N", never "aborted"."""

from __future__ import annotations

from sluice.engine.app.outcomes import outcome_text, superseded_by
from sluice.engine.store.history import RolloutRecord


def record(id: int, outcome: str, summary: str = "", module: str = "op") -> RolloutRecord:
    return RolloutRecord(
        id=id, estate="e", module=module, from_versions="1", version=str(id), actor="a",
        host="h", kind="rollout", started=float(id), finished=float(id) + 1, outcome=outcome,
        exit_code=3, summary=summary, waves_total=1, waves_done=0, plan={},
    )  # fmt: skip


def test_superseded_names_the_next_rollout_of_its_module() -> None:
    first = record(1, "superseded", "superseded by op 2 (stopped by a)")
    other = record(2, "done", module="other")
    second = record(3, "done")
    records = [second, other, first]
    assert outcome_text(first, records) == "superseded by #3"
    assert superseded_by(first, records) == 3
    assert outcome_text(second, records) == "done"
    assert superseded_by(second, records) is None


def test_an_abort_is_still_aborted_and_older_supersedes_read_the_same() -> None:
    aborted = record(1, "aborted", "aborted by a: aborted from the console")
    old = record(2, "aborted", "aborted by a: superseded by op 2.0.1")
    records = [record(3, "done"), old, aborted]
    assert outcome_text(aborted, records) == "aborted"
    assert outcome_text(old, records) == "superseded by #3"
    assert outcome_text(record(4, "superseded"), [record(4, "superseded")]) == "superseded"
