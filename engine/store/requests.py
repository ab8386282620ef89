"""Operator requests and freezes in history (schema 4): every SQL statement governance needs.

A request (``sluice approve|pause|unpause|abort``) is a row written by any process that can open
the history; the process driving the estate *claims* it (``pending`` → ``claimed``, one UPDATE
that only one claimant can win), carries it out and *answers* it (``done`` or ``refused``, with
the result text). A requester that hears nothing *expires* it with the same guard, so a late
driver never acts on a request whose requester already gave up. Rows are never deleted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sluice.engine.store.history import History

#: Request actions and what each does to the running rollout.
ACTIONS = ("approve", "pause", "unpause", "abort")


@dataclass(frozen=True)
class Request:
    id: int
    estate: str
    ts: float
    actor: str
    host: str
    action: str
    wave: int | None
    reason: str
    status: str = "pending"
    result: str | None = None


@dataclass(frozen=True)
class FreezeRow:
    id: int
    actor: str
    reason: str
    ts: float
    until: float | None


_REQUEST_COLUMNS = "id, estate, ts, actor, host, action, wave, reason, status, result"


def add_request(
    history: History,
    *,
    estate: str,
    actor: str,
    host: str,
    action: str,
    wave: int | None = None,
    reason: str = "",
) -> int:
    """Record a request; returns its id."""
    with history.db.atomic():
        return history.db.insert(
            "INSERT INTO requests (estate, ts, actor, host, action, wave, reason) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [estate, time.time(), actor, host, action, wave, reason],
        )


def request(history: History, request_id: int) -> Request | None:
    row = history.db.execute(
        f"SELECT {_REQUEST_COLUMNS} FROM requests WHERE id = ?", [request_id]
    ).fetchone()
    return Request(*row) if row else None


def pending_requests(history: History, estate: str) -> list[Request]:
    rows = history.db.execute(
        f"SELECT {_REQUEST_COLUMNS} FROM requests WHERE estate = ? AND status = 'pending' "
        "ORDER BY id",
        [estate],
    ).fetchall()
    return [Request(*row) for row in rows]


def claim_request(history: History, request_id: int, by: str) -> bool:
    """Take a pending request for carrying out; False when someone else (or expiry) got it first."""
    with history.db.atomic():
        cursor = history.db.execute(
            "UPDATE requests SET status = 'claimed', handled_by = ? "
            "WHERE id = ? AND status = 'pending'",
            [by, request_id],
        )
    return cursor.rowcount > 0


def answer_request(
    history: History, request_id: int, *, ok: bool, result: str, rollout_id: int | None
) -> None:
    with history.db.atomic():
        history.db.execute(
            "UPDATE requests SET status = ?, result = ?, rollout_id = ?, handled = ? "
            "WHERE id = ? AND status = 'claimed'",
            ["done" if ok else "refused", result, rollout_id, time.time(), request_id],
        )


def expire_request(history: History, request_id: int, result: str) -> bool:
    """Give up on a request nobody claimed; False when a driver claimed it meanwhile."""
    with history.db.atomic():
        cursor = history.db.execute(
            "UPDATE requests SET status = 'expired', result = ?, handled = ? "
            "WHERE id = ? AND status = 'pending'",
            [result, time.time(), request_id],
        )
    return cursor.rowcount > 0


def requests_of(history: History, rollout_id: int) -> list[dict[str, Any]]:
    """The requests a rollout's driver carried out or refused, oldest first (for ``show``)."""
    return list(
        history.db.query(
            "SELECT ts, actor, host, action, wave, reason, status, result FROM requests "
            "WHERE rollout_id = ? ORDER BY id",
            [rollout_id],
        )
    )


def driver_alive(history: History, estate: str, stale_after: float) -> dict[str, Any] | None:
    """The lease holder of ``estate`` if it wrote a heartbeat within ``stale_after`` seconds."""
    row = history.db.execute(
        "SELECT user, host, pid, heartbeat FROM lease WHERE estate = ?", [estate]
    ).fetchone()
    if row is None or time.time() - row[3] > stale_after:
        return None
    return dict(zip(("user", "host", "pid", "heartbeat"), row, strict=True))


# ---------------------------------------------------------------------- freezes


def freeze(history: History, *, estate: str, actor: str, reason: str, until: float | None) -> int:
    """Freeze ``estate`` (a freeze already in force is lifted by this one, which replaces it)."""
    now = time.time()
    with history.db.atomic():
        history.db.execute(
            "UPDATE freezes SET lifted = ?, lifted_by = ? WHERE estate = ? AND lifted IS NULL",
            [now, f"{actor} (replaced)", estate],
        )
        return history.db.insert(
            "INSERT INTO freezes (estate, ts, actor, reason, until) VALUES (?, ?, ?, ?, ?)",
            [estate, now, actor, reason, until],
        )


def unfreeze(history: History, *, estate: str, actor: str) -> FreezeRow | None:
    """Lift the freeze in force; returns it (``None``: the estate was not frozen)."""
    current = active_freeze(history, estate)
    if current is None:
        return None
    with history.db.atomic():
        history.db.execute(
            "UPDATE freezes SET lifted = ?, lifted_by = ? WHERE id = ? AND lifted IS NULL",
            [time.time(), actor, current.id],
        )
    return current


def active_freeze(history: History, estate: str, now: float | None = None) -> FreezeRow | None:
    """The freeze in force on ``estate`` at ``now`` (one whose ``until`` passed is not)."""
    row = history.db.execute(
        "SELECT id, actor, reason, ts, until FROM freezes WHERE estate = ? AND lifted IS NULL "
        "ORDER BY id DESC LIMIT 1",
        [estate],
    ).fetchone()
    if row is None:
        return None
    found = FreezeRow(*row)
    if found.until is not None and (time.time() if now is None else now) >= found.until:
        return None
    return found
