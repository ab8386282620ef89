"""Why the history could not be written, in words an operator can act on.

SQLite says "database or disk is full" or just "disk I/O error"; the OS knows more (the file
that refuses writes, a file-size limit, a deleted file). Only consulted once a write failed.
"""

from __future__ import annotations

import os
import resource
import sqlite3
from pathlib import Path

#: What a failed history write raises.
WRITE_ERRORS = (sqlite3.Error, OSError)


class HistoryIdentity:
    """The file a history was opened on, to notice it deleted or replaced while open."""

    def __init__(self, path: Path | str):
        """``path``: the history's file (a PostgreSQL URL has no file: never "gone")."""
        self.path = path
        try:
            stat = os.stat(path)
        except OSError:
            self._id: tuple[int, int] | None = None
        else:
            self._id = (stat.st_dev, stat.st_ino)
        #: SQLite's shared-memory file beside it (looked at before every write: made once).
        self._shm = Path(f"{path}-shm")

    def gone(self) -> str | None:
        """Why the file written to is no longer the one at :attr:`path`, or None."""
        if self._id is None:
            return None
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return "it was deleted while sluice ran (nothing more can be recorded)"
        except OSError as exc:
            return f"it cannot be reached any more ({exc.strerror or exc})"
        if (stat.st_dev, stat.st_ino) != self._id:
            return "it was replaced by another file while sluice ran"
        # SQLite writes the -shm through a memory map: made immutable, it would not fail a
        # write but kill the process (SIGBUS). So it is checked first — with access(2), never
        # by opening it: closing any descriptor of a file drops the process's POSIX locks on
        # it, which are SQLite's WAL locks.
        if _refuses_writes(self._shm):  # a file (a URL never got here: its _id is None)
            return f"{self._shm.name} cannot be written (immutable, or on a read-only file system)"
        return None


def _refuses_writes(path: Path) -> bool:
    """Whether ``path`` exists, and writing it is refused although its mode allows it to us
    (root, or our own file with its owner-write bit): the immutable flag, a read-only mount."""
    if os.access(path, os.W_OK):
        return False
    try:
        stat = os.stat(path)
    except OSError:
        return False
    me = os.geteuid()
    return me == 0 or (stat.st_uid == me and bool(stat.st_mode & 0o200))


def describe(exc: BaseException, path: Path | str) -> str:
    """``exc``'s reason, with what the OS says about the history's files."""
    reason = (
        str(exc) if isinstance(exc, sqlite3.Error) else (getattr(exc, "strerror", None) or str(exc))
    )
    if reason == "database or disk is full":
        reason = "disk full"
    hints: list[str] = []
    if not isinstance(path, Path):  # a database server: no files of ours to look at
        return reason
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        side = path.with_name(name)
        try:
            size = side.stat().st_size
        except OSError:
            continue
        if soft != resource.RLIM_INFINITY and size >= soft and "limit" not in " ".join(hints):
            hints.append(f"the file-size limit (ulimit -f) of {soft} bytes is reached")
        if not os.access(side, os.W_OK):  # never opened: that would drop SQLite's locks
            hints.append(
                f"{name} refuses writes (immutable?)"
                if _refuses_writes(side)
                else f"{name} is read-only"
            )
    return reason + (f" ({'; '.join(hints)})" if hints else "")
