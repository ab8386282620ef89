"""A real PostgreSQL server for the tests: Debian's ``postgresql`` (15), on 127.0.0.1, free port.

``initdb`` and ``pg_ctl`` refuse to run as root: as root they run as ``nobody`` in a directory
that user owns (``su -s /bin/sh nobody -c …``). The server is stopped by its pid (the first line
of ``postmaster.pid``): SIGINT is PostgreSQL's fast shutdown. ``fsync=off``: a test server.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(os.environ.get("SLUICE_PG_BIN", "/usr/lib/postgresql/15/bin"))
USER = "sluice"


class PostgresUnavailable(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_server_user(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    text = " ".join(shlex.quote(part) for part in command)
    argv = ["su", "-s", "/bin/sh", "nobody", "-c", text] if os.geteuid() == 0 else command
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)


@dataclass
class PostgresServer:
    directory: Path
    port: int
    pid: int
    databases: list[str] = field(default_factory=list)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database on this server; its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        self.databases.append(name)
        return self.url(name)

    def restart(self) -> None:
        """Stop (fast: every connection is dropped) and start again on the same port."""
        self._stop()
        self.pid = _start(self.directory, self.port)

    def _stop(self, deadline: float = 20.0) -> None:
        try:
            os.kill(self.pid, signal.SIGINT)
        except ProcessLookupError:
            return
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if not _running(self.pid):
                return
            time.sleep(0.05)
        os.kill(self.pid, signal.SIGKILL)

    def stop(self) -> None:
        self._stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def _running(pid: int) -> bool:
    """Whether ``pid`` runs. The postmaster is not our child (pg_ctl detaches it): once it exits it
    may stay a zombie of a PID 1 that does not reap, so a zombie counts as gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _start(directory: Path, port: int) -> int:
    data = directory / "data"
    options = f"-k {directory} -c listen_addresses=127.0.0.1 -p {port} -c fsync=off"
    started = _as_server_user(
        [
            str(BIN / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(directory / "log"),
            "-w",
            "start",
        ],
        directory,
    )
    if started.returncode != 0:
        log = (directory / "log").read_text()[-2000:] if (directory / "log").exists() else ""
        raise PostgresUnavailable(f"pg_ctl start failed: {started.stderr.strip()} {log}")
    return int((data / "postmaster.pid").read_text().splitlines()[0])


def start_postgres() -> PostgresServer:
    if not (BIN / "initdb").exists():
        raise PostgresUnavailable(f"{BIN / 'initdb'} not found (apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise PostgresUnavailable(f"psycopg is not installed: {exc}") from None
    directory = Path(tempfile.mkdtemp(prefix="sluice-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "nobody", "nogroup")
    directory.chmod(0o700)
    made = _as_server_user(
        [
            str(BIN / "initdb"),
            "-D",
            str(directory / "data"),
            "-U",
            USER,
            "--auth=trust",
            "-E",
            "UTF8",
        ],
        directory,
    )
    if made.returncode != 0:
        raise PostgresUnavailable(f"initdb failed: {made.stderr.strip()[-500:]}")
    port = _free_port()
    return PostgresServer(directory, port, _start(directory, port))
