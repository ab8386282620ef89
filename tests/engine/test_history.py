"""The history store: the file (0600, WAL), schema versions and migrations, reading rows back."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import time
from pathlib import Path

import pytest
from history_rows import row_dict, schema_version

from sluice.engine.rollout.events import ApplyOutput, EventBus, Notice, WaveStarted
from sluice.engine.store.history import (
    MIGRATIONS,
    SCHEMA_VERSION,
    History,
    HistoryError,
)
from sluice.engine.store.recorder import Recorder


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def new_rollout(history: History, *, module: str = "op", version: str = "2.0", **extra) -> int:
    return history.create_rollout(
        estate="e",
        module=module,
        version=version,
        from_versions="1.0",
        actor="tester",
        host="here",
        plan={"waves": [{"number": 1}], "module": module, "version": version},
        started=time.time(),
        **extra,
    )


def add_ledger(history: History, rollout_id: int, target: str, version: str, module="op"):
    with history.db.atomic():
        history.db.execute(
            "INSERT INTO ledger (target, module, version, since, rollout_id, action) "
            "VALUES (?, ?, ?, ?, ?, 'apply')",
            [target, module, version, time.time(), rollout_id],
        )


# --- the file -------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_the_file_directory_and_wal_files_are_private(tmp_path):
    path = tmp_path / "state" / "nested" / "history.db"
    old_umask = os.umask(0o022)  # a permissive umask must not leak into the file's mode
    try:
        history = History.open(path)
        rollout_id = new_rollout(history)  # a write: the -wal file exists while open
        assert rollout_id == 1
        assert mode(path) == 0o600
        assert mode(path.parent) == 0o700
        sides = [path.with_name(path.name + s) for s in ("-wal", "-shm")]
        assert all(side.exists() for side in sides)
        assert [mode(side) for side in sides] == [0o600, 0o600]
        assert history.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        history.close()
    finally:
        os.umask(old_umask)
    assert mode(path) == 0o600


@pytest.mark.timeout(30)
def test_opening_without_create_refuses_a_missing_history(tmp_path):
    with pytest.raises(HistoryError, match="no history yet"):
        History.open(tmp_path / "none.db", create=False)
    assert not (tmp_path / "none.db").exists()


@pytest.mark.timeout(30)
def test_a_file_that_is_not_sqlite_is_refused_cleanly(tmp_path):
    path = tmp_path / "history.db"
    path.write_bytes(b"this is not a database, it is a shopping list\n" * 200)
    with pytest.raises(HistoryError, match="not a usable sluice history"):
        History.open(path)


@pytest.mark.timeout(30)
def test_a_history_from_a_newer_sluice_is_refused(tmp_path):
    path = tmp_path / "history.db"
    History.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_version (version) VALUES (?)", [SCHEMA_VERSION + 1])
    conn.commit()
    conn.close()
    with pytest.raises(HistoryError, match="newer sluice"):
        History.open(path)


# --- schema versions --------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_new_history_is_at_the_current_schema_version(tmp_path):
    history = History.open(tmp_path / "h.db")
    try:
        assert schema_version(history) == SCHEMA_VERSION == max(MIGRATIONS)
        tables = {r[0] for r in history.db.execute("SELECT name FROM sqlite_master")}
        assert {
            "rollouts",
            "waves",
            "applies",
            "event_log",
            "samples",
            "operator_actions",
        } <= tables
        views = {
            r[0] for r in history.db.execute("SELECT name FROM sqlite_master WHERE type = 'view'")
        }
        assert views == {"events"}  # the whole stream, samples included, for SQL readers
        assert {"ledger", "lease", "lease_log", "schema_version"} <= tables
    finally:
        history.close()


@pytest.mark.timeout(30)
def test_a_version_1_history_migrates_to_the_current_version_and_keeps_its_rows(tmp_path):
    path = tmp_path / "old.db"
    # A history as the first release wrote it: only the v1 DDL, by hand.
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[1])
    conn.execute("INSERT INTO schema_version (version) VALUES (1)")
    conn.execute(
        "INSERT INTO rollouts (estate, module, from_versions, version, actor, host, started, "
        "finished, outcome, exit_code, waves_total, plan) "
        "VALUES ('e', 'op', '1.0', '2.0', 'ann', 'box', 100.0, 160.0, 'done', 0, 1, ?)",
        [json.dumps({"module": "op", "version": "2.0", "waves": [{"number": 1}]})],
    )
    conn.execute(
        "INSERT INTO waves (rollout_id, number, name, channel, started, outcome) "
        "VALUES (1, 1, 'dev 1/1', 'dev', 101.0, 'passed')"
    )
    conn.execute(
        "INSERT INTO ledger (target, module, version, since, rollout_id, action) "
        "VALUES ('dev-1', 'op', '2.0', 150.0, 1, 'apply')"
    )
    # v1 rows stored seq/ts/kind inside the JSON as well: they must still decode.
    conn.execute(
        "INSERT INTO events (rollout_id, seq, ts, kind, data) VALUES (1, 1, 101.0, 'notice', ?)",
        [json.dumps({"kind": "notice", "seq": 1, "ts": 101.0, "level": "info", "message": "hi"})],
    )
    conn.commit()
    conn.close()
    assert "lease" not in MIGRATIONS[1]

    history = History.open(path)
    try:
        assert schema_version(history) == SCHEMA_VERSION
        versions = [r[0] for r in history.db.execute("SELECT version FROM schema_version")]
        assert versions == list(range(1, SCHEMA_VERSION + 1))
        tables = {r[0] for r in history.db.execute("SELECT name FROM sqlite_master")}
        assert {"lease", "lease_log"} <= tables
        [record] = history.rollouts()
        assert (record.actor, record.outcome, record.duration, record.waves_done) == (
            "ann",
            "done",
            60.0,
            1,
        )
        assert history.ledger("op") == {"dev-1": "2.0"}
        assert history.events(1) == [Notice(seq=1, ts=101.0, level="info", message="hi")]
    finally:
        history.close()
    # Opening again does not migrate twice.
    history = History.open(path)
    try:
        assert (
            history.db.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0]
            == SCHEMA_VERSION
        )
    finally:
        history.close()


# --- reading ------------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_the_ledger_is_the_latest_entry_per_target_and_can_look_before_a_rollout(tmp_path):
    history = History.open(tmp_path / "h.db")
    try:
        first = new_rollout(history)
        add_ledger(history, first, "a", "2.0")
        add_ledger(history, first, "b", "2.0")
        add_ledger(history, first, "a", "2.0", module="other")
        second = new_rollout(history, version="3.0")
        add_ledger(history, second, "a", "3.0")
        third = new_rollout(history, kind="rollback")
        add_ledger(history, third, "a", "2.0")
        assert history.ledger("op") == {"a": "2.0", "b": "2.0"}
        assert history.ledger("op", before_rollout=second) == {"a": "2.0", "b": "2.0"}
        assert history.ledger("op", before_rollout=third) == {"a": "3.0", "b": "2.0"}
        assert history.ledger("op", before_rollout=first) == {}
        assert history.ledger("nothing") == {}
        assert [e["version"] for e in history.ledger_entries("op")] == ["2.0", "2.0", "3.0", "2.0"]
    finally:
        history.close()


@pytest.mark.timeout(30)
def test_rollouts_are_listed_newest_first_and_unfinished_ones_are_found(tmp_path):
    history = History.open(tmp_path / "h.db")
    try:
        ids = [new_rollout(history) for _ in range(4)]
        with history.db.atomic():
            history.db.execute("UPDATE rollouts SET outcome = 'done' WHERE id = ?", [ids[0]])
            history.db.execute("UPDATE rollouts SET outcome = 'stopped' WHERE id = ?", [ids[1]])
            history.db.execute("UPDATE rollouts SET outcome = 'halted' WHERE id = ?", [ids[2]])
        assert [r.id for r in history.rollouts()] == ids[::-1]
        assert [r.id for r in history.rollouts(limit=2)] == ids[:1:-1]
        assert [r.id for r in history.unfinished()] == [ids[3], ids[1]]
        assert history.rollout(999) is None
        record = history.rollout(ids[3])
        assert record is not None and record.duration is None and record.outcome == "running"
        assert record.to_dict()["duration"] is None and "plan" not in record.to_dict()
    finally:
        history.close()


@pytest.mark.timeout(30)
def test_records_read_without_their_plans_say_the_same_of_the_rollout(tmp_path):
    history = History.open(tmp_path / "h.db")
    try:
        ids = [new_rollout(history) for _ in range(2)]
        full, bare = history.rollout(ids[1]), history.rollout(ids[1], plan=False)
        assert full is not None and bare is not None and full.plan and bare.plan == {}
        assert bare.to_dict() == full.to_dict()
        assert [r.to_dict() for r in history.rollouts(plans=False)] == [
            r.to_dict() for r in history.rollouts()
        ]
    finally:
        history.close()


@pytest.mark.timeout(30)
def test_events_come_back_as_recorded_and_unknown_kinds_are_skipped(tmp_path):
    history = History.open(tmp_path / "h.db")
    try:
        rollout_id = new_rollout(history)
        bus = EventBus()
        bus.listen(Recorder(history, rollout_id, "op"))
        sent = [
            bus.emit(WaveStarted, wave=1, channel="dev", name="dev 1/1", targets=("a", "b")),
            bus.emit(ApplyOutput, target="a", stream="stdout", line="ünïcode → fine"),
        ]
        with history.db.atomic():  # a kind from a newer sluice
            history.db.execute(
                "INSERT INTO event_log (rollout_id, seq, ts, kind, data) VALUES (?, 99, 1.0, 'x', '{}')",
                [rollout_id],
            )
        assert history.events(rollout_id) == sent
        assert isinstance(history.events(rollout_id)[0].targets, tuple)
        dicts = [row_dict(r) for r in history.event_rows(rollout_id)]
        assert dicts[:2] == [json.loads(json.dumps(e.to_dict())) for e in sent]
        assert history.last_seq(rollout_id) == 99
        assert history.last_seq(rollout_id + 1) == 0
    finally:
        history.close()
