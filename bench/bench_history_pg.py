"""The recorder on a PostgreSQL history against raw psycopg floors in the same run.

Run: ``.venv/bin/python bench/bench_history.py --backend postgresql [--url URL] [--events N]
[--repeat R]`` (without ``--url`` a throwaway server is started on 127.0.0.1, as the tests do).

The stream is bench_history's realistic one (the first events of a simulated rollout: samples,
output lines, and each apply's start and finish, which the recorder commits at once — the
durability contract). The recorder runs in a driving :class:`Session` (the lease held, so every
transaction is fenced and NOTIFYs watchers), each repetition into a fresh database. Floors, with
the rows prebuilt (insert only), the same rows:

- **same commits**: raw psycopg, pipelined (one round trip per transaction), the commit points the
  recorder has — each apply's start and finish, and each milestone (wave start/end, gate, operator
  action, rollout end), committed at once with every row buffered before it (a group commit); the
  other rows in batches of the recorder's size in between — the same statements, without the lease
  check and the NOTIFY. The rows both wrote are checked equal afterwards;
- **one COPY**: every row in one transaction with ``COPY`` (no durability between events: what a
  bulk load costs).

Goals (issue 14): ≥ 20,000 events/s, within 2× of the same-commits floor. The exit status is 1
when a goal is missed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bench_history import (  # noqa: E402
    Timer,
    estate_file,
    median,
    rows_of,
    show,
    stream_of,
)

from sluice.engine.app.session import Session  # noqa: E402
from sluice.engine.model.estate import load_estate  # noqa: E402
from sluice.engine.model.plan import make_plan  # noqa: E402
from sluice.engine.rollout.events import (  # noqa: E402
    ApplyFinished,
    ApplyStarted,
    Event,
    GateEvaluated,
    OperatorAction,
    RolloutFinished,
    WaveFinished,
    WaveStarted,
)
from sluice.engine.store.recorder import BATCH_SIZE, Recorder  # noqa: E402
from sluice.engine.store.schema import SCHEMA_VERSION  # noqa: E402

GOAL_EVENTS_PER_SECOND = 20_000
GOAL_RATIO = 2.0
_FLUSHES = (OperatorAction, GateEvaluated, WaveStarted, WaveFinished, RolloutFinished)


def _database(server_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + f"/{name}"


def record(events: list[Event], estate_path: Path, url: str) -> tuple[float, float]:
    text = estate_path.read_text()
    estate_path.with_name("pg.toml").write_text(
        text.replace('history = "history.db"', f'history = "{url}"')
    )
    estate = load_estate(estate_path.with_name("pg.toml"))
    session = Session.open(estate)
    try:
        rollout = session.new_rollout(make_plan(estate, "op", "2.0"), interactive=False)
        recorder = Recorder(session.history, rollout.rollout_id, "op")
        with Timer() as timer:
            for event in events:
                recorder(event)
            recorder.flush()
    finally:
        session.close()
    return timer.both


def _ops(events: list[Event], rollout_id: int) -> list[tuple[str, Any]]:
    """The floor's writes in the order the recorder makes them, rows prebuilt."""
    rows = rows_of(events, rollout_id)
    events_rows, samples = iter(rows["event_log"]), iter(rows["samples"])
    applies = {row[2]: row for row in rows["applies"]}
    ledger = iter(rows["ledger"])
    ops: list[tuple[str, Any]] = []
    for e in events:
        if e.kind == "sample":
            ops.append(("sample", next(samples)))
            continue
        ops.append(("event", next(events_rows)))
        if isinstance(e, ApplyStarted):
            ops.append(("start", applies[e.target][:8]))
        elif isinstance(e, ApplyFinished):
            done = (e.ts, e.outcome, e.reason, e.duration, _tail(applies[e.target]))
            ops.append(
                (
                    "finish",
                    (done + (rollout_id, e.target), next(ledger) if e.outcome == "ok" else None),
                )
            )
        elif isinstance(e, _FLUSHES):
            ops.append(("flush", None))
    return ops


def _tail(row: Any) -> str:
    return row[12] or ""


_EV_SQL = "INSERT INTO event_log (rollout_id, seq, ts, kind, data) VALUES (%s, %s, %s, %s, %s)"
_SA_SQL = (
    "INSERT INTO samples (rollout_id, seq, wave, check_name, target, phase, ts, value, "
    "baseline, outcome, reason) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
_AP_SQL = (
    "INSERT INTO applies (rollout_id, wave, target, action, version, from_version, command, "
    "started) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
)
_UP_SQL = (
    "UPDATE applies SET finished = %s, outcome = %s, reason = %s, duration = %s, "
    "output_tail = %s WHERE id = (SELECT max(id) FROM applies WHERE rollout_id = %s "
    "AND target = %s AND outcome = 'started')"
)
_LE_SQL = (
    "INSERT INTO ledger (target, module, version, since, rollout_id, action) "
    "VALUES (%s, %s, %s, %s, %s, %s)"
)


def same_commits(events: list[Event], url: str) -> tuple[float, float]:
    import psycopg

    conn = psycopg.connect(url, autocommit=True)
    from sluice.engine.store.postgres import PostgresDatabase

    PostgresDatabase(conn, url).migrate(SCHEMA_VERSION)
    ops = _ops(events, 1)
    with Timer() as timer:
        buffered: list[Any] = []
        sampled: list[Any] = []

        def commit(op: str = "", row: Any = None) -> None:
            """One transaction, one round trip: the buffered rows, then the op's own."""
            with conn.pipeline(), conn.cursor() as cur:
                cur.execute("BEGIN")
                if buffered:
                    cur.executemany(_EV_SQL, buffered)
                if sampled:
                    cur.executemany(_SA_SQL, sampled)
                if op == "start":
                    cur.execute(_AP_SQL, row)
                elif op == "finish":
                    cur.execute(_UP_SQL, row[0])
                    if row[1] is not None:
                        cur.execute(_LE_SQL, row[1])
                cur.execute("COMMIT")
            buffered.clear()
            sampled.clear()

        for op, row in ops:
            if op == "event":
                buffered.append(row)
            elif op == "sample":
                sampled.append(row)
            else:
                commit(op, row)
            if len(buffered) + len(sampled) >= BATCH_SIZE:
                commit()
        commit()
    conn.close()
    return timer.both


def stored(url: str) -> dict[str, list[Any]]:
    """The rows a database holds of the stream (ids aside: both number them alike anyway)."""
    import psycopg

    queries = {
        "event_log": "SELECT rollout_id, seq, ts, kind, data FROM event_log ORDER BY seq",
        "samples": "SELECT rollout_id, seq, wave, check_name, target, phase, ts, value, baseline, "
        "outcome, reason FROM samples ORDER BY seq",
        "applies": "SELECT rollout_id, wave, target, action, version, from_version, command, "
        "started, finished, outcome, reason, duration, output_tail FROM applies ORDER BY id",
        "ledger": "SELECT target, module, version, since, rollout_id, action FROM ledger "
        "ORDER BY id",
    }
    with psycopg.connect(url) as conn:
        return {table: conn.execute(sql).fetchall() for table, sql in queries.items()}  # type: ignore[arg-type]


def one_copy(events: list[Event], url: str) -> tuple[float, float]:
    import psycopg

    from sluice.engine.store.postgres import PostgresDatabase

    conn = psycopg.connect(url, autocommit=True)
    PostgresDatabase(conn, url).migrate(SCHEMA_VERSION)
    rows = rows_of(events, 1)
    columns = {
        "event_log": "rollout_id, seq, ts, kind, data",
        "samples": "rollout_id, seq, wave, check_name, target, phase, ts, value, baseline, "
        "outcome, reason",
        "applies": "rollout_id, wave, target, action, version, from_version, command, started, "
        "finished, outcome, reason, duration, output_tail",
        "ledger": "target, module, version, since, rollout_id, action",
    }
    with Timer() as timer, conn.transaction(), conn.cursor() as cur:
        for table, names in columns.items():
            with cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows[table]:
                    copy.write_row(row)
    conn.close()
    return timer.both


async def main_async(args: argparse.Namespace) -> int:
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="bench-history-pg-"))
    server = None
    url = args.url
    if url is None:
        from pg_server import start_postgres

        server = start_postgres()
        url = server.url()
    try:
        load_average, cores = os.getloadavg()[0], os.cpu_count() or 1
        print(f"machine: {cores} cores, load average {load_average:.1f}; server {url}")
        estate_path = estate_file(work, max(4, args.events // 18))
        events = await stream_of(load_estate(estate_path), args.events)
        n = len(events)
        applies = sum(isinstance(e, (ApplyStarted, ApplyFinished)) for e in events)
        commits = sum(isinstance(e, (ApplyStarted, ApplyFinished, *_FLUSHES)) for e in events)
        print(
            f"{n:,} events ({applies:,} apply starts/finishes; {commits:,} events committed at "
            "once, each with what was buffered before it)"
        )
        timings: dict[str, list[tuple[float, float]]] = {"rec": [], "same": [], "copy": []}
        for i in range(args.repeat):
            stamp = f"{os.getpid()}_{i}_{time.time_ns() % 10**6}"
            rec_url, same_url = _database(url, f"b_rec_{stamp}"), _database(url, f"b_same_{stamp}")
            timings["rec"].append(record(events, estate_path, rec_url))
            timings["same"].append(same_commits(events, same_url))
            timings["copy"].append(one_copy(events, _database(url, f"b_copy_{stamp}")))
            if i == 0 and stored(rec_url) != stored(same_url):
                raise SystemExit("the same-commits floor did not write the recorder's rows")
        rec, same, copy = (median(timings[k]) for k in ("rec", "same", "copy"))
        print(
            f"   recorder (fenced, NOTIFY)   {show(timings['rec'])}  {n / rec[0]:>9,.0f} events/s"
        )
        print(
            f"   raw psycopg, same commits   {show(timings['same'])}  {n / same[0]:>9,.0f} events/s"
        )
        print(
            f"   raw psycopg, one COPY       {show(timings['copy'])}  {n / copy[0]:>9,.0f} events/s"
        )
        ratio = rec[0] / same[0]
        print(
            f"   recorder / same-commits floor: {ratio:.2f}×; / one COPY: {rec[0] / copy[0]:.1f}×"
        )
        speed_ok = n / rec[0] >= GOAL_EVENTS_PER_SECOND
        ratio_ok = ratio <= GOAL_RATIO
        print(
            f"goal: ≥ {GOAL_EVENTS_PER_SECOND:,} events/s — {'meets' if speed_ok else 'MISSES'} it"
        )
        print(
            f"goal: within {GOAL_RATIO:.0f}× of the floor — {'meets' if ratio_ok else 'MISSES'} it"
        )
        return 0 if speed_ok and ratio_ok else 1
    finally:
        if server is not None:
            server.stop()
        import shutil

        shutil.rmtree(work, ignore_errors=True)
