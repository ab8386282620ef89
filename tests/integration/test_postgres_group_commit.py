"""Group commit on a real PostgreSQL server: the starts of a wave's concurrent applies are one
commit, none of them launches before its start is durable, their finishes are one commit too; and
the launch check relies on a shared fenced commit only while it is fresh.

Which transaction wrote a row is PostgreSQL's own record: ``xmin``, the id of the transaction
that inserted (or last updated) it. Each apply's launch reads its ``applies`` row through another
connection — a row it can see there is committed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sluice.engine.app.session import Session
from sluice.engine.executors.base import ApplyResult, Job
from sluice.engine.model.estate import load_estate
from sluice.engine.rollout.events import ApplyStarted
from sluice.engine.store import recorder as recorder_module
from sluice.engine.store.lease import LeaseLost
from sluice.engine.store.recorder import FENCE_FRESH, Recorder
from sluice.engine.support.clock import Clock

TARGETS = 12


def write_estate(directory: Path, url: str) -> Path:
    targets = "".join(
        f'[targets.t{i:02d}]\nchannel = "c"\nexecutor = "probe"\n' for i in range(TARGETS)
    )
    path = directory / "estate.toml"
    path.write_text(
        f'[estate]\nname = "grouped"\nhistory = "{url}"\n'
        f'[[channels]]\nname = "c"\nmax_parallel = {TARGETS}\nwaves = ["100%"]\n'
        '[executors.probe]\nkind = "simulated"\n'
        '[modules.m]\nversions = ["1", "2"]\ninitial = "1"\n' + targets
    )
    return path


class Probe:
    """An executor whose every launch looks, through its own connection, for the apply's row."""

    seen: dict[str, Any] = {}

    def __init__(self, url: str, *_: Any):
        self.conn = psycopg.connect(url, autocommit=True)

    def describe(self, job: Job) -> str:
        return f"probe {job.target}"

    async def apply(self, job: Job, output: Any) -> ApplyResult:
        job.launching()
        row = self.conn.execute(
            "SELECT xmin::text FROM applies WHERE target = %s AND outcome = 'started'",
            [job.target],
        ).fetchone()
        Probe.seen[job.target] = None if row is None else row[0]
        output("stdout", f"{job.target}: applied")
        return ApplyResult(True, "")

    async def close(self) -> None:
        self.conn.close()


@pytest.mark.timeout(60)
async def test_a_waves_starts_are_one_commit_and_none_launches_before_it(tmp_path, history_url):
    estate = load_estate(write_estate(tmp_path, history_url))
    Probe.seen = {}
    session = Session.open(estate)
    try:
        rollout = session.new_rollout(
            session.plan("m", "2"),
            clock=Clock(0),
            interactive=False,
            executor_factory=lambda spec, *rest: Probe(history_url),
        )
        outcome = await session.drive(rollout)
        assert outcome.outcome == "done"
    finally:
        session.close()
    # Every launch found its start committed (seen from another connection), all in one commit.
    assert sorted(Probe.seen) == [f"t{i:02d}" for i in range(TARGETS)]
    assert None not in Probe.seen.values()
    assert len(set(Probe.seen.values())) == 1
    with psycopg.connect(history_url) as conn:
        finishes = conn.execute(
            "SELECT count(*), count(DISTINCT xmin::text) FROM applies WHERE outcome = 'ok'"
        ).fetchone()
        ledger = conn.execute("SELECT count(*), count(DISTINCT xmin::text) FROM ledger").fetchone()
        tails = conn.execute("SELECT target, output_tail FROM applies ORDER BY target").fetchall()
    assert finishes == (TARGETS, 1) and ledger == (TARGETS, 1)  # the finishes: one commit
    assert tails == [(f"t{i:02d}", f"stdout: t{i:02d}: applied") for i in range(TARGETS)]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("stopped", [False, True])
def test_a_launch_relies_on_a_shared_fenced_commit_only_while_it_is_fresh(
    tmp_path, history_url, monkeypatch, stopped
):
    """Right after the start's fenced commit the launch needs no round trip of its own; a
    process stopped after it for longer than FENCE_FRESH (by a clock that counts the stop)
    checks the lease again — and one taken over meanwhile never launches."""
    now = [1000.0]
    monkeypatch.setattr(recorder_module, "_since_boot", lambda: now[0])
    estate = load_estate(write_estate(tmp_path, history_url))
    session = Session.open(estate)
    try:
        rollout = session.new_rollout(session.plan("m", "2"), interactive=False)
        recorder = Recorder(session.history, rollout.rollout_id, "m")
        recorder(
            ApplyStarted(
                seq=1, ts=time.time(), wave=1, target="t00", version="2", from_version="1",
                action="apply",
            )
        )  # fmt: skip
        assert "t00" in recorder.unfinished  # no running loop: committed at once, fenced
        with psycopg.connect(history_url, autocommit=True) as other:
            other.execute("UPDATE lease SET epoch = epoch + 1, host = 'elsewhere', pid = 1")
        transactions = 0
        transaction = session.history.db.transaction

        def counted():  # type: ignore[no-untyped-def]
            nonlocal transactions
            transactions += 1
            return transaction()

        session.history.db.transaction = counted  # type: ignore[method-assign]
        if stopped:
            now[0] += FENCE_FRESH
            with pytest.raises(LeaseLost):
                recorder.may_launch()
            assert transactions == 1 and recorder.lost is not None
        else:
            now[0] += FENCE_FRESH / 2
            recorder.may_launch()  # covered by the start's fence, 50 ms ago: no round trip
            assert transactions == 0 and recorder.lost is None
    finally:
        session.close()
