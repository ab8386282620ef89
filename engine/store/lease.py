"""The one-driver lease on an estate, held in its history, and the fence every write passes.

A driver takes the lease (a ``lease`` row: holder user@host, pid, heartbeat and an **epoch**, a
number that grows with every acquisition and takeover) and renews it every few seconds. A holder
whose heartbeat stopped for :data:`LEASE_TIMEOUT` is taken over — and on this host, one whose
process is gone at once. Every write of a driving session passes :meth:`Lease.check` in the
transaction that writes (the history's :meth:`~sluice.engine.store.history.History.writing`), so a
process that was stopped (SIGSTOP, a closed laptop lid) past the timeout and taken over cannot
record — nor, since an apply is recorded as started before it is launched, launch — anything: it
gets :class:`LeaseLost` instead.

The host identity is ``SLUICE_HOST`` when set (two "machines" in one test), else the host name.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sluice.engine.rollout.state import StopDriving

if TYPE_CHECKING:
    from sluice.engine.store.backend import Database

#: A lease whose holder has not written a heartbeat for this long is taken over.
LEASE_TIMEOUT = 30.0

#: A rollback still "running" when a driver takes the lease had no driver: its process died.
INTERRUPTED_ROLLBACK = (
    "interrupted: its driver stopped before it finished; targets it did not finish keep the "
    "version the ledger shows — run `sluice rollback` again"
)


class LeaseHeld(Exception):
    """Another process drives this estate (exit code 5)."""

    @property
    def refusal(self) -> str:
        """The one line a command that wanted to drive prints (the console and the CLI)."""
        return f"sluice: {self}; it may be watched, not driven, from here"


class LeaseLost(StopDriving):
    """This process held the lease and another one took it over (exit code 6)."""


def this_host() -> str:
    """The host identity a lease records: ``SLUICE_HOST``, else the host name."""
    return os.environ.get("SLUICE_HOST") or socket.gethostname()


def alive(pid: int) -> bool:
    """Whether process ``pid`` on this host still runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


@dataclass(frozen=True)
class Holder:
    user: str
    host: str
    pid: int
    heartbeat: float
    epoch: int

    def text(self) -> str:
        age = time.time() - self.heartbeat
        return f"{self.user}@{self.host} (pid {self.pid}, last heartbeat {age:.0f}s ago)"

    def short(self) -> str:
        return f"{self.user}@{self.host} pid {self.pid}"


_HOLDER_SQL = 'SELECT "user", host, pid, heartbeat, epoch FROM lease WHERE estate = ?'


def _holder(db: Database, estate: str) -> Holder | None:
    row = db.execute(_HOLDER_SQL, [estate]).fetchone()
    return None if row is None else Holder(row[0], row[1], int(row[2]), row[3], int(row[4] or 0))


class Lease:
    """The lease of ``estate`` for this process (``user`` on :func:`this_host`, this pid)."""

    def __init__(self, db: Database, estate: str, user: str):
        self.db = db
        self.estate = estate
        self.user = user
        self.host = this_host()
        self.pid = os.getpid()
        #: The epoch we hold (None: not held).
        self.epoch: int | None = None
        #: What a takeover said, for the rollout's notices.
        self.takeover: str | None = None

    def me(self) -> str:
        return f"{self.user}@{self.host} pid {self.pid}"

    def holder(self) -> Holder | None:
        return _holder(self.db, self.estate)

    def acquire(self) -> None:
        """Take the lease, or raise :class:`LeaseHeld` naming its live holder."""
        now = time.time()
        with self.db.transaction():
            if self.db.lock_lease:
                self.db.execute(self.db.lock_lease)
            holder = _holder(self.db, self.estate)
            previous = None
            if holder is not None:
                previous = self._takeover_reason(holder, now)
            epoch = int(
                self.db.execute(
                    "SELECT COALESCE(MAX(epoch), 0) FROM lease_log WHERE estate = ?", [self.estate]
                ).fetchone()[0]
            )
            epoch = max(epoch, holder.epoch if holder else 0) + 1
            self.db.execute("DELETE FROM lease WHERE estate = ?", [self.estate])
            self.db.execute(
                'INSERT INTO lease (estate, "user", host, pid, acquired, heartbeat, epoch) '
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [self.estate, self.user, self.host, self.pid, now, now, epoch],
            )
            self.db.execute(
                "INSERT INTO lease_log (ts, estate, action, holder, previous, epoch) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    now,
                    self.estate,
                    "takeover" if previous else "acquire",
                    self.me(),
                    previous,
                    epoch,
                ],
            )
            # A rollback still "running" while we hold the lease has no driver: its process died.
            # It cannot be resumed (a new `sluice rollback` plans again from the ledger), so it
            # ends here rather than claiming to run forever.
            self.db.execute(
                "UPDATE rollouts SET outcome = 'interrupted', finished = ?, summary = ? "
                "WHERE kind = 'rollback' AND outcome = 'running' AND estate = ?",
                [now, INTERRUPTED_ROLLBACK, self.estate],
            )
        self.epoch = epoch

    def _takeover_reason(self, holder: Holder, now: float) -> str | None:
        """Why ``holder``'s lease may be taken (None: it is ours); raises LeaseHeld if not."""
        local = holder.host == self.host
        if local and holder.pid == self.pid:
            return None
        if local and not alive(holder.pid):
            why = "holder process is gone"
        elif now - holder.heartbeat > LEASE_TIMEOUT:
            why = f"no heartbeat for {now - holder.heartbeat:.0f}s"
        else:
            raise LeaseHeld(f"estate {self.estate!r} is driven by {holder.text()}")
        self.takeover = (
            f"took over the lease from {holder.user}@{holder.host} pid {holder.pid}: {why}"
        )
        return f"{holder.short()} ({why})"

    def check(self) -> None:
        """Raise :class:`LeaseLost` unless we still hold the lease. Call it inside the write
        transaction: the lease row then cannot change before that transaction ends."""
        if self.db.fence(self.estate, self.epoch, self.host, self.pid):
            return  # the server checks it (PostgreSQL: FenceFailed out of the transaction)
        holder = self.db.execute(_HOLDER_SQL + self.db.lock_row, [self.estate]).fetchone()
        if holder is not None and (int(holder[4] or 0), holder[1], int(holder[2])) == (
            self.epoch,
            self.host,
            self.pid,
        ):
            return
        raise LeaseLost(self.lost_text(holder))

    def lost_text(self, row: Any = None) -> str:
        if row is None:
            row = self.db.execute(_HOLDER_SQL, [self.estate]).fetchone()
        by = (
            "nobody holds it now"
            if row is None
            else f"it is held by {row[0]}@{row[1]} pid {row[2]}"
        )
        return f"this process ({self.me()}) lost the lease on estate {self.estate!r}: {by}"

    def heartbeat(self) -> bool:
        """Renew the lease; False when it is no longer ours (taken over while we were silent)."""
        with self.db.transaction():
            cursor = self.db.execute(
                "UPDATE lease SET heartbeat = ? WHERE estate = ? AND pid = ? AND host = ? "
                "AND epoch = ?",
                [time.time(), self.estate, self.pid, self.host, self.epoch],
            )
        return cursor.rowcount > 0

    def release(self) -> None:
        """Give the lease up (if it is still ours: a new holder's lease is left alone)."""
        with self.db.transaction():
            released = self.db.execute(
                "DELETE FROM lease WHERE estate = ? AND pid = ? AND host = ? AND epoch = ?",
                [self.estate, self.pid, self.host, self.epoch],
            ).rowcount
            # Taken over while we were silent: the lease is someone else's now; say so.
            self.db.execute(
                "INSERT INTO lease_log (ts, estate, action, holder, epoch) VALUES (?, ?, ?, ?, ?)",
                [
                    time.time(),
                    self.estate,
                    "release" if released else "lost",
                    self.me(),
                    self.epoch,
                ],
            )
        self.epoch = None
