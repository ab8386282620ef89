"""Schema 3: samples stored once, the ``events`` view, applies and ledger without AUTOINCREMENT —
and the migration from a version 2 history, which must keep every row it had."""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
from history_rows import row_dict, schema_version

from sluice.engine.rollout.events import (
    ApplyFinished,
    ApplyOutput,
    ApplyStarted,
    Event,
    EventBus,
    Notice,
    SampleTaken,
    WaveStarted,
)
from sluice.engine.store.history import MIGRATIONS, SCHEMA_VERSION, History
from sluice.engine.store.recorder import Recorder
from sluice.engine.store.replay import ReplaySource
from sluice.engine.store.schema import SAMPLE_COLUMNS


def sample(seq: int, ts: float, value: float | None, **extra) -> SampleTaken:
    fields = {
        "wave": 1, "check": "p99", "target": "t-1", "phase": "soak", "value": value,
        "baseline": 0.1, "outcome": "pass", "reason": "",
    }  # fmt: skip
    fields.update(extra)
    return SampleTaken(seq=seq, ts=ts, **fields)


def order(table: str) -> str:
    return "rollout_id, seq" if table == "events" else "rowid"  # events has no rowid


def v2_history(path: Path) -> dict[str, list[tuple]]:
    """A history as schema 2 wrote it, by hand: a sample is a JSON ``events`` row *and* a
    ``samples`` row; applies and ledger ids come from AUTOINCREMENT. Returns its rows by table."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    for version in (1, 2):
        conn.executescript(MIGRATIONS[version])
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", [version])
    conn.execute(
        "INSERT INTO rollouts (estate, module, from_versions, version, actor, host, started, "
        "outcome, waves_total, plan) VALUES ('e', 'op', '1.0', '2.0', 'ann', 'box', 100.0, "
        "'running', 1, ?)",
        [json.dumps({"module": "op", "version": "2.0", "waves": [{"number": 1}]})],
    )
    conn.execute(
        "INSERT INTO waves (rollout_id, number, name, channel, started) "
        "VALUES (1, 1, 'dev 1/1', 'dev', 101.0)"
    )
    # Ids with a gap (an id AUTOINCREMENT gave a row since lost): kept as they are.
    for apply_id, target, outcome in ((1, "t-1", "ok"), (2, "t-2", "started"), (7, "t-3", "ok")):
        conn.execute(
            "INSERT INTO applies (id, rollout_id, wave, target, action, version, from_version, "
            "command, started, finished, outcome, duration, output_tail) "
            "VALUES (?, 1, 1, ?, 'apply', '2.0', '1.0', 'cmd', 102.0, 103.0, ?, 1.0, 'tail')",
            [apply_id, target, outcome],
        )
    for ledger_id, target in ((3, "t-1"), (9, "t-3")):
        conn.execute(
            "INSERT INTO ledger (id, target, module, version, since, rollout_id, action) "
            "VALUES (?, ?, 'op', '2.0', 103.0, 1, 'apply')",
            [ledger_id, target],
        )
    stream = [
        WaveStarted(seq=1, ts=101.0, wave=1, channel="dev", name="dev 1/1", targets=("t-1",)),
        ApplyOutput(seq=2, ts=102.5, target="t-1", stream="stdout", line="hello"),
        sample(3, 104.0, 0.123456789012345678),
        sample(4, 105.0, None, outcome="inconclusive", reason="no data"),
        Notice(seq=5, ts=106.0, level="info", message="hi"),
    ]
    for event in stream:
        data = {k: v for k, v in event.to_dict().items() if k not in ("kind", "seq", "ts")}
        conn.execute(
            "INSERT INTO events (rollout_id, seq, ts, kind, data) VALUES (1, ?, ?, ?, ?)",
            [event.seq, event.ts, event.kind, json.dumps(data)],
        )
        if isinstance(event, SampleTaken):
            conn.execute(
                "INSERT INTO samples (rollout_id, wave, check_name, target, phase, ts, value, "
                "baseline, outcome, reason) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [event.wave, event.check, event.target, event.phase, event.ts, event.value,
                 event.baseline, event.outcome, event.reason],
            )  # fmt: skip
    conn.execute(
        "INSERT INTO operator_actions (rollout_id, ts, actor, action, reason, wave) "
        "VALUES (1, 107.0, 'ann', 'pause', 'lunch', 1)"
    )
    conn.execute(
        "INSERT INTO lease_log (ts, estate, action, holder) VALUES (99.0, 'e', 'acquire', 'ann')"
    )
    conn.commit()
    tables = ("rollouts", "waves", "applies", "ledger", "events", "samples", "operator_actions")
    rows = {t: conn.execute(f"SELECT * FROM {t} ORDER BY {order(t)}").fetchall() for t in tables}
    rows["lease_log"] = conn.execute("SELECT * FROM lease_log").fetchall()
    rows["stream"] = stream  # type: ignore[assignment]
    conn.close()
    return rows


@pytest.mark.timeout(60)
def test_a_version_2_history_migrates_keeping_every_row_and_goes_on_recording(tmp_path):
    path = tmp_path / "v2.db"
    before = v2_history(path)
    stream: list[Event] = before.pop("stream")  # type: ignore[assignment]

    history = History.open(path)
    try:
        assert schema_version(history) == SCHEMA_VERSION == 5
        versions = [r[0] for r in history.db.execute("SELECT version FROM schema_version")]
        assert versions == [1, 2, 3, 4, 5]
        db = history.db
        # Every row of every table is still there, as it was (events: now in event_log).
        for table, rows in before.items():
            source = "event_log" if table == "events" else table
            columns = "*" if table != "samples" else ", ".join(SAMPLE_COLUMNS)
            after = db.execute(f"SELECT {columns} FROM {source} ORDER BY {order(table)}").fetchall()
            if table in ("lease", "lease_log"):  # v4 added the epoch, 0 for older rows
                assert [row[-1] for row in after] == [0] * len(after), table
                after = [row[:-1] for row in after]
            assert after == rows, table
        assert db.execute("SELECT seq FROM samples").fetchall() == [(None,), (None,)]
        # AUTOINCREMENT is gone (no sqlite_sequence row rewritten per apply) …
        sequences = dict(db.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
        assert "applies" not in sequences and "ledger" not in sequences
        # … and the stream reads back whole, each event once.
        assert history.events(1) == stream
        assert [r["value"] for r in history.samples(1)] == [0.123456789012345678, None]
        assert [a["id"] for a in history.applies(1)] == [1, 2, 7]
        assert history.ledger("op") == {"t-1": "2.0", "t-3": "2.0"}
        assert history.last_seq(1) == 5

        # The rollout goes on (a resume): new ids follow the old ones; new samples are
        # stored once, in samples; the whole stream still reads back in order.
        bus = EventBus(start_seq=6, clock=iter(float(t) for t in range(200, 300)).__next__)
        recorder = Recorder(history, 1, "op")
        bus.listen(recorder)
        more = [
            bus.emit(ApplyStarted, wave=1, target="t-2", version="2.0", from_version="1.0"),
            bus.emit(
                SampleTaken,
                wave=1,
                check="p99",
                target="t-1",
                phase="soak",
                value=0.2,
                baseline=0.1,
                outcome="pass",
            ),  # fmt: skip
            bus.emit(
                ApplyFinished,
                wave=1,
                target="t-2",
                version="2.0",
                from_version="1.0",
                action="apply",
                outcome="ok",
            ),  # fmt: skip
        ]
        recorder.flush()
        assert [a["id"] for a in history.applies(1)] == [1, 2, 7, 8]
        assert [e["id"] for e in history.ledger_entries("op")] == [3, 9, 10]
        assert history.events(1) == stream + more
        assert history.last_seq(1) == 8
        assert db.execute("SELECT seq FROM samples").fetchall() == [(None,), (None,), (7,)]
        assert db.execute("SELECT COUNT(*) FROM event_log WHERE seq = 7").fetchone()[0] == 0
        # The events view shows the stream as one table, the old samples and the new alike.
        view = db.execute("SELECT seq, ts, kind, data FROM events ORDER BY seq").fetchall()
        assert [{"kind": k, "seq": s, "ts": t, **json.loads(d)} for s, t, k, d in view] == [
            json.loads(json.dumps(e.to_dict())) for e in stream + more
        ]
        replay = ReplaySource(history, 1)
        assert list(replay.events) == stream + more
    finally:
        history.close()
    history = History.open(path)  # opened again: nothing migrates twice
    try:
        assert (
            history.db.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0]
            == SCHEMA_VERSION
            == 5
        )
        assert history.events(1) == stream + more
    finally:
        history.close()


def new_history(tmp_path: Path) -> tuple[History, int]:
    history = History.open(tmp_path / "h.db")
    rollout_id = history.create_rollout(
        estate="e", module="m", version="2", from_versions="1", actor="a", host="h",
        plan={"waves": []}, started=time.time(),
    )  # fmt: skip
    return history, rollout_id


TRICKY = [
    0.1,
    0.30000000000000004,
    1 / 3,
    5e-324,
    2.2250738585072014e-308,
    1.7976931348623157e308,
    123456789.123456789,
    1e-05,
    -2.5,
    0.0,
    250.0,
]


@pytest.mark.timeout(30)
def test_samples_are_stored_once_and_read_back_exactly(tmp_path):
    history, rollout_id = new_history(tmp_path)
    try:
        bus = EventBus()
        recorder = Recorder(history, rollout_id, "m")
        bus.listen(recorder)
        sent = [
            bus.emit(
                SampleTaken,
                wave=1,
                check="c",
                target=f"t-{i}",
                phase="soak",
                value=value,
                baseline=TRICKY[-1 - i],
                outcome="pass",
                reason="ünï → ok",
            )  # fmt: skip
            for i, value in enumerate(TRICKY)
        ]
        sent.append(
            bus.emit(
                SampleTaken,
                wave=1,
                check="c",
                target="t-x",
                phase="baseline",
                value=None,
                baseline=None,
                outcome="error",
                reason="refused",
            )  # fmt: skip
        )
        recorder.flush()
        db = history.db
        assert db.execute("SELECT COUNT(*) FROM event_log").fetchone()[0] == 0
        assert db.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == len(sent)
        got = history.events(rollout_id)
        assert got == sent
        assert history.last_seq(rollout_id) == len(sent)  # a resume continues after the samples
        assert [repr(e.value) for e in got] == [repr(e.value) for e in sent]  # type: ignore[attr-defined]
        assert [row_dict(r) for r in history.event_rows(rollout_id)] == [e.to_dict() for e in sent]
        # The view's JSON reads back as the same doubles too.
        view = db.execute("SELECT data FROM events ORDER BY seq").fetchall()
        assert [json.loads(d)["value"] for (d,) in view] == [*TRICKY, None]
        assert [json.loads(d)["baseline"] for (d,) in view] == [*TRICKY[::-1], None]
    finally:
        history.close()


@dataclass(frozen=True, kw_only=True)
class LoudSample(SampleTaken):
    """A subclass (no kind of its own): stored as its class says, never narrowed to a column row."""

    kind: ClassVar[str] = "sample"


@pytest.mark.timeout(30)
def test_a_sample_a_column_would_change_is_kept_as_json_and_still_listed(tmp_path):
    history, rollout_id = new_history(tmp_path)
    odd = [math.nan, math.inf, -math.inf, -0.0, 7]  # NaN → NULL, 7 → 7.0, -0.0 → 0.0 in a REAL
    try:
        bus = EventBus()
        recorder = Recorder(history, rollout_id, "m")
        bus.listen(recorder)
        sent = [
            bus.emit(
                SampleTaken,
                wave=1,
                check="c",
                target="t",
                phase="soak",
                value=value,
                baseline=None,
                outcome="inconclusive",
            )  # fmt: skip
            for value in odd
        ]
        sent.append(
            bus.emit(
                SampleTaken,
                wave=1,
                check="c",
                target="t",
                phase="soak",
                value=0.5,
                baseline=-0.0,
                outcome="pass",
            )  # fmt: skip
        )
        recorder.flush()
        db = history.db
        rows = db.execute("SELECT kind, data FROM event_log ORDER BY seq").fetchall()
        assert [k for k, _ in rows] == ["sample"] * len(sent)
        got = history.events(rollout_id)
        assert [repr(e.value) for e in got] == ["nan", "inf", "-inf", "-0.0", "7", "0.5"]  # type: ignore[attr-defined]
        assert repr(got[-1].baseline) == "-0.0"  # type: ignore[attr-defined]
        assert [type(e.value) for e in got] == [float] * 4 + [int, float]  # type: ignore[attr-defined]
        # show/export still list every measurement (with the value a REAL column can hold).
        listed = history.samples(rollout_id)
        assert len(listed) == len(sent)
        assert db.execute("SELECT COUNT(*) FROM samples WHERE seq IS NOT NULL").fetchone()[0] == 0
    finally:
        history.close()


@pytest.mark.timeout(30)
def test_a_sample_subclass_is_not_narrowed_to_a_column_row(tmp_path):
    history, rollout_id = new_history(tmp_path)
    try:
        recorder = Recorder(history, rollout_id, "m")
        event = LoudSample(
            seq=1, ts=1.0, wave=1, check="c", target="t", phase="soak", value=0.5,
            baseline=None, outcome="pass",
        )  # fmt: skip
        recorder(event)
        recorder.flush()
        assert history.db.execute("SELECT kind FROM event_log").fetchall() == [("sample",)]
        assert history.events(rollout_id) == [
            SampleTaken(**{f.name: getattr(event, f.name) for f in dataclasses.fields(event)})
        ]
        assert len(history.samples(rollout_id)) == 1
    finally:
        history.close()


@pytest.mark.timeout(30)
def test_a_new_file_has_small_pages_and_an_old_file_keeps_its_own(tmp_path):
    history, _ = new_history(tmp_path)
    try:
        assert history.db.execute("PRAGMA page_size").fetchone()[0] == 1024
    finally:
        history.close()
    old = tmp_path / "old.db"
    v2_history(old)  # written with SQLite's default page size
    history = History.open(old)
    try:
        assert history.db.execute("PRAGMA page_size").fetchone()[0] == 4096
        assert history.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        history.close()
