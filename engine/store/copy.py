"""Move a history: every record of an estate, from one history to another (file or URL), verified.

``copy_history`` reads each table in its order (ids kept; rows without an id in their insertion
order), writes them into the destination in one transaction, then reads the destination back and
compares each table's row count and content hash (SHA-256 over the rows, in order, as JSON) with
the source's. A destination that already holds this estate is refused unless ``replace`` (its rows
of every table are then deleted first, in the same transaction); one that holds another estate
is always refused — ids would collide. The source is read in one snapshot and never written; an
estate someone is driving (a lease with a recent heartbeat) is refused. The lease row itself is
live state, not a record: it is not copied (its log is).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sluice.engine.store.history import History
from sluice.engine.store.lease import LEASE_TIMEOUT
from sluice.engine.store.schema import SAMPLE_COLUMNS

#: Each copied table: its columns (both backends have them) and its order.
TABLES: dict[str, tuple[tuple[str, ...], str]] = {
    "rollouts": (
        (
            "id", "estate", "module", "from_versions", "version", "actor", "host", "kind",
            "started", "finished", "outcome", "exit_code", "summary", "waves_total", "plan",
        ),
        "id",
    ),
    "waves": (
        (
            "rollout_id", "number", "name", "channel", "started", "finished", "outcome",
            "verdict", "reasons",
        ),
        "rollout_id, number",
    ),
    "applies": (
        (
            "id", "rollout_id", "wave", "target", "action", "version", "from_version", "command",
            "started", "finished", "outcome", "reason", "duration", "output_tail",
        ),
        "id",
    ),
    "event_log": (("rollout_id", "seq", "ts", "kind", "data"), "rollout_id, seq"),
    "samples": ((*SAMPLE_COLUMNS, "seq"), "rowid"),
    "operator_actions": (
        ("rollout_id", "ts", "actor", "action", "reason", "wave", "target"),
        "rowid",
    ),
    "ledger": (("id", "target", "module", "version", "since", "rollout_id", "action"), "id"),
    "lease_log": (("ts", "estate", "action", "holder", "previous", "epoch"), "rowid"),
    "requests": (
        (
            "id", "estate", "ts", "actor", "host", "action", "wave", "reason", "status", "result",
            "rollout_id", "handled", "handled_by",
        ),
        "id",
    ),
    "freezes": (
        ("id", "estate", "ts", "actor", "reason", "until", "lifted", "lifted_by"),
        "id",
    ),
}  # fmt: skip
#: Tables whose ``id`` the destination must continue after (PostgreSQL identities).
_IDS = ("rollouts", "applies", "ledger", "requests", "freezes")


class CopyRefused(Exception):
    """The destination holds records it must not lose (exit code 2)."""


class CopyMismatch(Exception):
    """The destination read back differs from the source (exit code 2; nothing is lost)."""


@dataclass(frozen=True)
class TableCopy:
    table: str
    rows: int
    sha256: str


def _rows(history: History, table: str) -> list[tuple[Any, ...]]:
    columns, order = TABLES[table]
    sql = f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}"
    return [tuple(row) for row in history.db.execute(sql).fetchall()]


def digest(rows: Sequence[Sequence[Any]]) -> str:
    """The content hash of ``rows`` (as both backends return them: ints, floats, text, None)."""
    sha = hashlib.sha256()
    for row in rows:
        sha.update(json.dumps(list(row), separators=(",", ":")).encode())
        sha.update(b"\n")
    return sha.hexdigest()


def _estates(history: History) -> set[str]:
    found = history.db.execute("SELECT DISTINCT estate FROM rollouts").fetchall()
    logged = history.db.execute("SELECT DISTINCT estate FROM lease_log").fetchall()
    return {row[0] for row in [*found, *logged]}


def check_destination(dest: History, estate: str, *, replace: bool) -> None:
    """Raise :class:`CopyRefused` unless ``dest`` may receive ``estate``'s history."""
    held = _estates(dest)
    others = sorted(held - {estate})
    if others:
        raise CopyRefused(
            f"{dest.path} holds the history of estate {others[0]!r}: copy into an empty history"
        )
    if estate in held and not replace:
        counts = dest.db.execute("SELECT COUNT(*) FROM rollouts").fetchone()[0]
        raise CopyRefused(
            f"{dest.path} already holds estate {estate!r} ({counts} rollout(s)): "
            "pass --replace to overwrite it"
        )
    live = dest.db.execute('SELECT "user", host, pid FROM lease').fetchall()
    if live:
        user, host, pid = live[0]
        raise CopyRefused(f"{dest.path} is being driven by {user}@{host} pid {pid}")


def _snapshot(source: History) -> dict[str, list[tuple[Any, ...]]]:
    """Every table of ``source``, read in one consistent snapshot."""
    with source.db.transaction():
        if source.db.kind == "postgresql":
            source.db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        live = source.db.execute('SELECT "user", host, pid, heartbeat FROM lease').fetchall()
        for user, host, pid, heartbeat in live:
            if time.time() - heartbeat <= LEASE_TIMEOUT:
                raise CopyRefused(
                    f"{source.path} is being driven by {user}@{host} pid {pid}: copy it when "
                    "no rollout runs"
                )
        return {table: _rows(source, table) for table in TABLES}


def copy_history(source: History, dest: History, estate: str, *, replace: bool) -> list[TableCopy]:
    """Copy every record; the verified row count and hash of each table."""
    check_destination(dest, estate, replace=replace)
    snapshot = _snapshot(source)
    expected = {}
    with dest.db.transaction():
        for table in reversed(TABLES):
            dest.db.execute(f"DELETE FROM {table}")
        for table, (columns, _) in TABLES.items():
            rows = snapshot[table]
            expected[table] = TableCopy(table, len(rows), digest(rows))
            if rows:
                marks = ", ".join("?" * len(columns))
                sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
                dest.db.executemany(sql, rows)
        if dest.db.kind == "postgresql":
            for table in (*_IDS, "samples", "operator_actions", "lease_log"):
                key = "id" if table in _IDS else "rowid"
                dest.db.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', '{key}'), "
                    f"COALESCE((SELECT MAX({key}) FROM {table}), 0) + 1, false)"
                )
    for table, want in expected.items():
        rows = _rows(dest, table)
        got = TableCopy(table, len(rows), digest(rows))
        if got != want:
            raise CopyMismatch(
                f"{dest.path}: table {table} read back {got.rows} rows (sha256 {got.sha256[:12]}) "
                f"where the source has {want.rows} (sha256 {want.sha256[:12]})"
            )
    return list(expected.values())
