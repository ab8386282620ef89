"""``sluice rollback ESTATE --to ROLLOUT_ID|TIME``: the estate back to a point in time.

Real ``sluice`` processes on a copy of the sample estate (its simulated applies never fail here):
three rollouts across two modules, then a restore to the end of the first — killed with
SIGKILL in the middle and run again — must leave every target on exactly the versions the
ledger recorded at that moment.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_estate.toml"
PG, BOUNCER = "postgres-operator", "pgbouncer"

pytestmark = pytest.mark.timeout(300)


def sluice(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sluice.cli", *map(str, args)],
        cwd=REPO, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def ok(result: subprocess.CompletedProcess[str], code: int = 0) -> str:
    assert result.returncode == code, (
        f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout


def _db(estate: Path) -> sqlite3.Connection:
    return sqlite3.connect(estate.parent / ".sluice" / "history.db")


def versions(estate: Path, *, upto_rollout: int | None = None) -> dict[tuple[str, str], str]:
    """(target, module) → version from the ledger (all of it, or up to a rollout)."""
    sql = "SELECT target, module, version FROM ledger"
    params: list[int] = []
    if upto_rollout is not None:
        sql += " WHERE rollout_id <= ?"
        params.append(upto_rollout)
    with _db(estate) as db:
        out: dict[tuple[str, str], str] = {}
        for target, module, version in db.execute(sql + " ORDER BY id", params):
            out[(target, module)] = version
    return out


def full(estate: Path, known: dict[tuple[str, str], str]) -> dict[tuple[str, str], str]:
    """Every target × module, the module's initial where the ledger has nothing."""
    import tomllib

    doc = tomllib.loads(estate.read_text())
    return {
        (t, m): known.get((t, m), spec["initial"])
        for t in doc["targets"]
        for m, spec in doc["modules"].items()
    }


@pytest.fixture
def three_rollouts(tmp_path: Path) -> Path:
    estate = tmp_path / "estate.toml"
    estate.write_text(SAMPLE.read_text().replace("failure_rate = 0.05 ", "failure_rate = 0.0 "))
    fast = ("--headless", "--approve", "--time-scale", "0")
    ok(sluice("run", estate, f"{PG}@2.0.1", *fast))  # #1: everything on 2.0.1
    ok(sluice("run", estate, f"{BOUNCER}@1.22.1", *fast))  # #2: the other module
    ok(sluice("run", estate, f"{PG}@2.0.0", *fast), 1)  # #3: halts in dev (ephemeral+dev on 2.0.0)
    return estate


def test_restore_to_a_rollout_puts_every_target_and_module_back(three_rollouts: Path) -> None:
    estate = three_rollouts
    then = full(estate, versions(estate, upto_rollout=1))
    before = full(estate, versions(estate))
    assert before != then
    both = [t for (t, m) in then if m == PG and before[(t, PG)] != then[(t, PG)]]
    assert both and all(before[(t, BOUNCER)] != then[(t, BOUNCER)] for t in both)

    out = ok(
        sluice("rollback", estate, "--to", "1", "--headless", "--approve", "--time-scale", "0")
    )
    assert "restore acme-platform to #1: 50 change(s) on 36 target(s) in 3 part(s)" in out
    assert full(estate, versions(estate)) == then

    with _db(estate) as db:
        parts = db.execute(
            "SELECT id, module, outcome, version FROM rollouts WHERE id > 3 ORDER BY id"
        ).fetchall()
        assert parts == [
            (4, PG, "done", "as of #1"),  # round 1: each target's newest change (rollout #3)...
            (5, BOUNCER, "done", "as of #1"),  # ...then those whose newest was pgbouncer
            (6, BOUNCER, "done", "as of #1"),  # round 2: pgbouncer on those that changed both
        ]
        # A target that changed both modules: postgres-operator (the newer change) first.
        order = db.execute(
            "SELECT r.module FROM applies a JOIN rollouts r ON r.id = a.rollout_id "
            "WHERE a.target = ? AND r.id > 3 ORDER BY a.id",
            [both[0]],
        ).fetchall()
        assert order == [(PG,), (BOUNCER,)]
        # Production first (--order reverse is the default): #5's first wave is production's.
        first_wave = db.execute(
            "SELECT channel FROM waves WHERE rollout_id = 5 ORDER BY number LIMIT 1"
        ).fetchone()
        assert first_wave == ("production",)
    # Run again: nothing left to do.
    out = ok(sluice("rollback", estate, "--to", "1", "--headless", "--time-scale", "0"))
    assert "nothing to restore: every target runs what it ran at #1" in out


def test_restore_is_resumable_after_kill_9(three_rollouts: Path) -> None:
    estate = three_rollouts
    then = full(estate, versions(estate, upto_rollout=1))
    # Slow enough to be killed in the middle: applies of 0.1–0.2 s, soaks of 0.75 s.
    proc = subprocess.Popen(
        [sys.executable, "-m", "sluice.cli", "rollback", str(estate), "--to", "1", "--headless",
         "--approve", "--time-scale", "0.05"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        done = 0
        while time.monotonic() < deadline:
            with _db(estate) as db:
                done = db.execute("SELECT COUNT(*) FROM ledger WHERE rollout_id > 3").fetchone()[0]
            if done >= 3:
                break
            time.sleep(0.05)  # polling the history, with a deadline
        assert done >= 3, "the restore never got going"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert full(estate, versions(estate)) != then  # cut off in the middle

    out = ok(
        sluice("rollback", estate, "--to", "1", "--headless", "--approve", "--time-scale", "0")
    )
    assert "resuming rollout #4, a part of this restore left unfinished" in out
    assert full(estate, versions(estate)) == then
    with _db(estate) as db:
        # No (target, module) was applied twice successfully: the resumed part kept what it did.
        twice = db.execute(
            "SELECT a.target, r.module, COUNT(*) FROM applies a JOIN rollouts r ON r.id = a.rollout_id "
            "WHERE r.id > 3 AND a.outcome = 'ok' GROUP BY a.target, r.module HAVING COUNT(*) > 1"
        ).fetchall()
        assert twice == []
        outcomes = db.execute("SELECT outcome FROM rollouts WHERE id > 3 ORDER BY id").fetchall()
        assert outcomes and all(o == ("done",) for o in outcomes)


def test_restore_to_a_time_and_one_channel(three_rollouts: Path) -> None:
    estate = three_rollouts
    with _db(estate) as db:
        finished = db.execute("SELECT finished FROM rollouts WHERE id = 2").fetchone()[0]
    # Local, no offset; to the microsecond: rollout #3 starts within a second of #2's end.
    when = dt.datetime.fromtimestamp(finished + 0.001).isoformat(timespec="microseconds")
    out = ok(sluice("rollback", estate, "--to", when, "--channel", "dev", "--headless",
                    "--time-scale", "0"))  # fmt: skip
    assert "14 change" not in out and "6 change(s) on 6 target(s) in 1 part(s)" in out
    now = versions(estate)
    assert {now[(t, PG)] for t in ("dev-eu-1", "dev-ap-2")} == {"2.0.1"}
    assert now[("eph-101", PG)] == "2.0.0"  # another channel: left alone


def test_bad_points_in_time(three_rollouts: Path) -> None:
    estate = three_rollouts
    for to, message in (
        ("99", "sluice: --to 99: there is no rollout #99 in"),
        ("yesterday", "sluice: --to 'yesterday': expected a rollout id or a time like"),
    ):
        result = sluice("rollback", estate, "--to", to, "--headless")
        assert result.returncode == 2 and result.stderr.startswith(message), result.stderr
    result = sluice("rollback", estate, "--to", "1", "--channel", "qa", "--headless")
    assert result.returncode == 2 and "--channel qa: no such channel" in result.stderr
