"""`sluice copy-history`: the sample estate's history from SQLite to PostgreSQL and back, lossless."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from history_backends import PgHistory

from sluice.engine.store.copy import TABLES, digest

REPO = Path(__file__).resolve().parents[2]
FAST = ("--headless", "--time-scale", "0")


def sluice(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sluice.cli", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )


def sqlite_tables(path: Path) -> dict[str, list[tuple]]:
    conn = sqlite3.connect(path)
    try:
        return {
            t: conn.execute(f"SELECT {', '.join(c)} FROM {t} ORDER BY {o}").fetchall()
            for t, (c, o) in TABLES.items()
        }
    finally:
        conn.close()


def pg_tables(history: PgHistory) -> dict[str, list[tuple]]:
    return {
        t: history.query(f"SELECT {', '.join(c)} FROM {t} ORDER BY {o}")
        for t, (c, o) in TABLES.items()
    }


@pytest.mark.timeout(300)
def test_copy_history_sqlite_to_postgresql_and_back_is_lossless(tmp_path, postgres):
    estate = tmp_path / "estate.toml"
    shutil.copy(REPO / "sample_estate.toml", estate)
    assert sluice("run", estate, "postgres-operator@2.0.0", *FAST, cwd=tmp_path).returncode == 1
    assert (
        sluice(
            "run", estate, "postgres-operator@2.0.1", *FAST, "--approve", cwd=tmp_path
        ).returncode
        == 0
    )
    source = tmp_path / ".sluice" / "history.db"
    before = sqlite_tables(source)
    assert len(before["rollouts"]) == 2 and len(before["samples"]) > 100

    url = postgres.new_database()
    copied = sluice("copy-history", estate, url, cwd=tmp_path)
    assert copied.returncode == 0, copied.stdout + copied.stderr
    assert "verified" in copied.stdout
    pg = PgHistory(url)
    on_pg = pg_tables(pg)
    for table, rows in before.items():
        assert digest(on_pg[table]) == digest(rows), table

    # Refused the second time, saying which; --replace overwrites.
    again = sluice("copy-history", estate, url, cwd=tmp_path)
    assert again.returncode == 2 and "already holds estate 'acme-platform'" in again.stderr
    assert "--replace" in again.stderr
    assert sluice("copy-history", estate, url, "--replace", cwd=tmp_path).returncode == 0

    # The estate now on PostgreSQL reads the same history; copied back to a new file, it is equal.
    on_server = tmp_path / "on-server.toml"
    on_server.write_text(
        estate.read_text().replace('history = ".sluice/history.db"', f'history = "{url}"')
    )
    listed = sluice("history", on_server, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "secret" not in listed.stdout
    # The same table below the first line (which names where the history is).
    local = sluice("history", estate, cwd=tmp_path).stdout
    assert listed.stdout.split("\n", 1)[1] == local.split("\n", 1)[1]
    back = tmp_path / "back.db"
    returned = sluice("copy-history", on_server, back, cwd=tmp_path)
    assert returned.returncode == 0, returned.stdout + returned.stderr
    assert sqlite_tables(back) == before
    # The ledger both read agrees.
    plan = sluice("plan", on_server, "postgres-operator@2.0.1", "--json", cwd=tmp_path)
    assert (
        plan.stdout
        == sluice("plan", estate, "postgres-operator@2.0.1", "--json", cwd=tmp_path).stdout
    )
