"""Opening a history only to read it, and telling "cannot write" from "not a history".

``sluice history``, ``show``, ``export``, ``replay`` and a watching console only read: they open
the file read-only, so they work on a history this process may not write (mode 0400, a 0500
directory, another user's, an immutable file).
"""

from __future__ import annotations

import sqlite3
import urllib.parse
from pathlib import Path

#: SQLite primary result codes that mean "cannot write here", not "not a history".
_NOT_WRITABLE_CODES = frozenset({3, 8, 10, 13, 14})  # PERM READONLY IOERR FULL CANTOPEN


class ReadProblem(Exception):
    """The history cannot be read (the message says why)."""


def not_writable(exc: BaseException) -> bool:
    """Whether ``exc`` (from SQLite or the OS) says the history cannot be written."""
    if isinstance(exc, OSError):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and (code & 0xFF) in _NOT_WRITABLE_CODES


def open_readonly(path: Path, schema_version: int) -> sqlite3.Connection | None:
    """A read-only connection to the history at ``path``; None when it must be opened for
    writing first (not a history yet, or an older schema to migrate).

    Raises:
        ReadProblem: it cannot be read, is not a history, or is newer than this sluice.
    """
    uri = "file:" + urllib.parse.quote(str(path.resolve())) + "?mode=ro"
    # A WAL history needs its -shm beside it; in a directory we cannot write and with no -wal
    # (so no writer, who would need one), the file is read as immutable instead.
    unshared = not path.with_name(path.name + "-wal").exists()
    for extra in ("", "&immutable=1") if unshared else ("",):
        try:
            conn = sqlite3.connect(uri + extra, uri=True, timeout=10.0, check_same_thread=False)
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # not a history yet: the writable open says so
                return None
            if extra or not unshared:
                raise ReadProblem(f"cannot read the history ({exc})") from None
            continue
        except sqlite3.DatabaseError as exc:
            raise ReadProblem(f"not a usable sluice history ({exc})") from None
        current = row[0] or 0
        if current != schema_version:
            conn.close()
            if current > schema_version:
                raise ReadProblem(
                    f"written by a newer sluice (schema {current} > {schema_version})"
                )
            return None
        return conn
    return None
