"""The history file's schema: the DDL of each version, the forward migrations, the file settings.

:meth:`sluice.engine.store.history.History.open` runs ``MIGRATIONS[v]`` for every version ``v`` above the file's
recorded one, in one transaction. A migration keeps every row: it adds tables, columns, indexes and
views, renames, or copies a table's rows as they are into a new definition of it.
"""

from __future__ import annotations

SCHEMA_VERSION = 5

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rollouts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    estate TEXT NOT NULL, module TEXT NOT NULL, from_versions TEXT NOT NULL, version TEXT NOT NULL,
    actor TEXT NOT NULL, host TEXT NOT NULL, kind TEXT NOT NULL DEFAULT 'rollout',
    started REAL NOT NULL, finished REAL, outcome TEXT NOT NULL DEFAULT 'running', exit_code INTEGER,
    summary TEXT, waves_total INTEGER NOT NULL, plan TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS waves (
    rollout_id INTEGER NOT NULL, number INTEGER NOT NULL, name TEXT NOT NULL, channel TEXT NOT NULL,
    started REAL, finished REAL, outcome TEXT, verdict TEXT, reasons TEXT,
    PRIMARY KEY (rollout_id, number)
);
CREATE TABLE IF NOT EXISTS applies (
    id INTEGER PRIMARY KEY AUTOINCREMENT, rollout_id INTEGER NOT NULL, wave INTEGER NOT NULL,
    target TEXT NOT NULL, action TEXT NOT NULL, version TEXT NOT NULL, from_version TEXT NOT NULL,
    command TEXT, started REAL NOT NULL, finished REAL, outcome TEXT NOT NULL DEFAULT 'started',
    reason TEXT, duration REAL, output_tail TEXT
);
CREATE INDEX IF NOT EXISTS applies_rollout ON applies (rollout_id, target);
CREATE TABLE IF NOT EXISTS events (
    rollout_id INTEGER NOT NULL, seq INTEGER NOT NULL, ts REAL NOT NULL, kind TEXT NOT NULL,
    data TEXT NOT NULL, PRIMARY KEY (rollout_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS samples (
    rollout_id INTEGER NOT NULL, wave INTEGER NOT NULL, check_name TEXT NOT NULL, target TEXT NOT NULL,
    phase TEXT NOT NULL, ts REAL NOT NULL, value REAL, baseline REAL, outcome TEXT NOT NULL, reason TEXT
);
CREATE INDEX IF NOT EXISTS samples_rollout ON samples (rollout_id, wave);
CREATE TABLE IF NOT EXISTS operator_actions (
    rollout_id INTEGER NOT NULL, ts REAL NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    reason TEXT, wave INTEGER, target TEXT
);
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT, target TEXT NOT NULL, module TEXT NOT NULL,
    version TEXT NOT NULL, since REAL NOT NULL, rollout_id INTEGER NOT NULL, action TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_target ON ledger (module, target, id);
"""

# v2: the driver lease and its audit trail.
_SCHEMA_V2 = """
CREATE TABLE IF NOT EXISTS lease (
    estate TEXT PRIMARY KEY, user TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL,
    acquired REAL NOT NULL, heartbeat REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS lease_log (
    ts REAL NOT NULL, estate TEXT NOT NULL, action TEXT NOT NULL, holder TEXT NOT NULL, previous TEXT
);
"""

# v3, for the recorder's speed (the rows a rollout writes, and their meaning, are the same):
# - ``applies`` and ``ledger`` lose AUTOINCREMENT: each insert also rewrote ``sqlite_sequence``, a
#   page more in every apply's own commit. Rows are never deleted from either, so ids are still
#   never reused; the rows are copied as they are, ids included.
# - a sample is stored once, in ``samples`` (it was also a JSON ``events`` row): the rows gain the
#   event's ``seq``, the other events move to ``event_log``, and ``events`` becomes a view of the
#   whole stream. Older rollouts keep their sample events in ``event_log`` and their samples rows
#   have no ``seq``, so the view (and History.event_rows) still holds each event once.
#   ``%!.18g``: SQLite's formatting needs 18 digits (17 are not always enough with it) for the
#   JSON to read back as the same double.
_SCHEMA_V3 = """
CREATE TABLE applies_v3 (
    id INTEGER PRIMARY KEY, rollout_id INTEGER NOT NULL, wave INTEGER NOT NULL,
    target TEXT NOT NULL, action TEXT NOT NULL, version TEXT NOT NULL, from_version TEXT NOT NULL,
    command TEXT, started REAL NOT NULL, finished REAL, outcome TEXT NOT NULL DEFAULT 'started',
    reason TEXT, duration REAL, output_tail TEXT
);
INSERT INTO applies_v3 (id, rollout_id, wave, target, action, version, from_version, command,
    started, finished, outcome, reason, duration, output_tail)
    SELECT id, rollout_id, wave, target, action, version, from_version, command, started,
    finished, outcome, reason, duration, output_tail FROM applies ORDER BY id;
DROP TABLE applies;
ALTER TABLE applies_v3 RENAME TO applies;
CREATE INDEX applies_rollout ON applies (rollout_id, target);
CREATE TABLE ledger_v3 (
    id INTEGER PRIMARY KEY, target TEXT NOT NULL, module TEXT NOT NULL,
    version TEXT NOT NULL, since REAL NOT NULL, rollout_id INTEGER NOT NULL, action TEXT NOT NULL
);
INSERT INTO ledger_v3 (id, target, module, version, since, rollout_id, action)
    SELECT id, target, module, version, since, rollout_id, action FROM ledger ORDER BY id;
DROP TABLE ledger;
ALTER TABLE ledger_v3 RENAME TO ledger;
CREATE INDEX ledger_target ON ledger (module, target, id);
ALTER TABLE events RENAME TO event_log;
ALTER TABLE samples ADD COLUMN seq INTEGER;
DROP INDEX IF EXISTS samples_rollout;
CREATE UNIQUE INDEX IF NOT EXISTS samples_seq ON samples (rollout_id, seq);
CREATE VIEW IF NOT EXISTS events (rollout_id, seq, ts, kind, data) AS
    SELECT rollout_id, seq, ts, kind, data FROM event_log
    UNION ALL
    SELECT rollout_id, seq, ts, 'sample', json_object(
        'wave', wave, 'check', check_name, 'target', target, 'phase', phase,
        'value', CASE WHEN value IS NULL THEN NULL ELSE json(printf('%!.18g', value)) END,
        'baseline', CASE WHEN baseline IS NULL THEN NULL ELSE json(printf('%!.18g', baseline)) END,
        'outcome', outcome, 'reason', reason
    ) FROM samples WHERE seq IS NOT NULL
"""

# v4, governance: operator requests from other terminals (``sluice approve|pause|unpause|abort``),
# carried out by the driving process, which writes the result into the same row; and freezes
# (``sluice freeze``), an estate-wide stop of new waves, lifted by a later row's ``lifted``.
_SCHEMA_V4 = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY, estate TEXT NOT NULL, ts REAL NOT NULL, actor TEXT NOT NULL,
    host TEXT NOT NULL, action TEXT NOT NULL, wave INTEGER, reason TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'pending', result TEXT, rollout_id INTEGER, handled REAL,
    handled_by TEXT
);
CREATE INDEX IF NOT EXISTS requests_pending ON requests (estate, status);
CREATE TABLE IF NOT EXISTS freezes (
    id INTEGER PRIMARY KEY, estate TEXT NOT NULL, ts REAL NOT NULL, actor TEXT NOT NULL,
    reason TEXT NOT NULL, until REAL, lifted REAL, lifted_by TEXT
);
CREATE INDEX IF NOT EXISTS freezes_estate ON freezes (estate, id)
"""

# v5: the lease is fenced — each acquisition and takeover takes the next epoch, and every write
# of a driver checks, in its own transaction, that the lease still holds its epoch. Rows written
# before have epoch 0.
_SCHEMA_V5 = """
ALTER TABLE lease ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE lease_log ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0
"""

MIGRATIONS = {1: _SCHEMA_V1, 2: _SCHEMA_V2, 3: _SCHEMA_V3, 4: _SCHEMA_V4, 5: _SCHEMA_V5}

#: The ``samples`` columns a reader sees (``seq`` is the stream's business, not the report's).
SAMPLE_COLUMNS = (
    "rollout_id", "wave", "check_name", "target", "phase", "ts", "value", "baseline", "outcome",
    "reason",
)  # fmt: skip

#: The page size of a new file. A commit writes every page it changes, whole, to the WAL, and each
#: apply's start and finish is a commit of its own changing 2–4 pages: at SQLite's default of 4 KB
#: that is ~25 KB of WAL per apply for ~300 bytes of rows, every byte of it fsynced at the next
#: checkpoint. 1 KB pages write a quarter of that; the batched rows fill pages just as densely.
PAGE_SIZE = 1024
#: The WAL is checkpointed into the file (two fsyncs) when it holds this much (SQLite's default is
#: 1,000 pages). Fewer, larger checkpoints also copy a page rewritten by many commits only once.
WAL_CHECKPOINT_BYTES = 16 * 1024 * 1024
