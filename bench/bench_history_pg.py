"""The recorder on a PostgreSQL history against raw psycopg floors in the same run.

Run: ``.venv/bin/python bench/bench_history.py --backend postgresql [--url URL] [--events N]
[--repeat R]`` (without ``--url`` a throwaway server is started on 127.0.0.1, as the tests do).

**The realistic stream** is bench_history's simulated rollout, driven for real once (untimed)
through a :class:`Session` on a PostgreSQL history — its recorder, group commits and launch
checks as in any run — and captured as a *schedule*: its first N events in the order they were
emitted, each launch check (``Recorder.may_launch``) where an executor made it, and each point
where the event loop went round between them (where the recorder's group commit of the applies'
starts and finishes runs). Each repetition replays that schedule into a fresh database through a
fresh :class:`Recorder` of a driving session (the lease held: every transaction fenced, NOTIFYing
watchers), inside a running loop: the events fed as the bus feeds them, the launch checks made,
the loop let go round at each of those points (``asyncio.sleep(0)``). Every transaction the
recorder makes is counted as it begins (with how many events were fed by then).

Floors, with the rows prebuilt (insert only), the same rows:

- **same commits**: raw psycopg, committing exactly where the recorder committed *in that
  repetition* (measured, not assumed — an empty transaction where the recorder's was a launch
  check): each transaction the rows of the events fed since the previous one, written as the
  recorder writes them — pipelined, the event and sample rows by ``COPY`` from
  :data:`~sluice.engine.store.pg_pipeline.COPY_ROWS` rows on, the applies' statements after them
  (each run of one statement in one ``executemany``, the ledger entries last) — without the lease
  check and the NOTIFY. The rows both wrote are checked equal afterwards;
- **one COPY**: every row in one transaction with ``COPY`` (no durability between events: what a
  bulk load costs).

Goals (issue 14): ≥ 20,000 events/s, within 2× of the same-commits floor. The exit status is 1
when a goal is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bench_history import Timer, estate_file, median, rows_of, show  # noqa: E402

from sluice.engine.app.session import Session  # noqa: E402
from sluice.engine.model.estate import load_estate  # noqa: E402
from sluice.engine.model.plan import make_plan  # noqa: E402
from sluice.engine.rollout.events import ApplyFinished, ApplyStarted, Event  # noqa: E402
from sluice.engine.store.pg_pipeline import COPY_ROWS  # noqa: E402
from sluice.engine.store.recorder import Recorder  # noqa: E402
from sluice.engine.store.schema import SCHEMA_VERSION  # noqa: E402
from sluice.engine.support.clock import Clock  # noqa: E402

GOAL_EVENTS_PER_SECOND = 20_000
GOAL_RATIO = 2.0


def _database(server_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + f"/{name}"


#: A schedule: ("event", e) fed to the recorder, ("launch", None) a launch check, ("turn", None)
#: the event loop going round, ("commit", None) a history transaction of the driven run (counted).
Schedule = list[tuple[str, Any]]


def _pg_estate(estate_path: Path, url: str, name: str) -> Path:
    path = estate_path.with_name(name)
    path.write_text(estate_path.read_text().replace('history = "history.db"', f'history = "{url}"'))
    return path


async def schedule_of(estate_path: Path, url: str, count: int) -> Schedule:
    """Drive the simulated rollout for real (Session, PostgreSQL history, group commits); its
    first ``count`` events, launch checks and loop turns, in order."""
    estate = load_estate(_pg_estate(estate_path, url, "schedule.toml"))
    session = Session.open(estate)
    schedule: Schedule = []
    loop = asyncio.get_running_loop()
    pending = False

    def turned() -> None:
        nonlocal pending
        pending = False
        schedule.append(("turn", None))

    def seen(event: Event) -> None:
        nonlocal pending
        schedule.append(("event", event))
        if not pending:
            pending = True
            loop.call_soon(turned)

    try:
        rollout = session.new_rollout(
            make_plan(estate, "op", "2.0"), clock=Clock(0), interactive=False
        )
        recorder = session.recorders[-1]
        check = recorder.may_launch

        def may_launch() -> None:
            schedule.append(("launch", None))
            check()

        recorder.may_launch = may_launch  # type: ignore[method-assign]
        rollout.bus.listen(seen)
        db = session.history.db
        transaction = db.transaction

        def counted() -> Any:
            schedule.append(("commit", None))
            return transaction()

        db.transaction = counted  # type: ignore[method-assign]
        outcome = await session.drive(rollout)
        db.transaction = transaction  # type: ignore[method-assign]
    finally:
        session.close()
    events = [i for i, (op, _) in enumerate(schedule) if op == "event"]
    if outcome.outcome != "done" or len(events) < count:
        raise SystemExit(f"the schedule's rollout gave {len(events)} events, {outcome}")
    return schedule[: events[count - 1] + 1]


async def record(schedule: Schedule, estate_path: Path, url: str) -> tuple[float, float, list[int]]:
    """Replay ``schedule`` into a fresh recorder of a driving session; the times and, for each
    transaction the recorder made, how many events had been fed when it began."""
    estate = load_estate(_pg_estate(estate_path, url, "pg.toml"))
    session = Session.open(estate)
    fed = 0
    commits: list[int] = []
    try:
        rollout = session.new_rollout(make_plan(estate, "op", "2.0"), interactive=False)
        recorder = Recorder(session.history, rollout.rollout_id, "op")
        db = session.history.db
        transaction = db.transaction

        def counted() -> Any:
            commits.append(fed)
            return transaction()

        db.transaction = counted  # type: ignore[method-assign]
        with Timer() as timer:
            for op, event in schedule:
                if op == "event":
                    recorder(event)
                    fed += 1
                elif op == "launch":
                    recorder.may_launch()
                elif op == "turn":
                    await asyncio.sleep(0)
            recorder.flush()
        db.transaction = transaction  # type: ignore[method-assign]
    finally:
        session.close()
    return (*timer.both, commits)


def _ops(events: list[Event], rollout_id: int) -> list[list[tuple[str, Any]]]:
    """Each event's writes (rows prebuilt), in the order the recorder makes them."""
    rows = rows_of(events, rollout_id)
    events_rows, samples = iter(rows["event_log"]), iter(rows["samples"])
    applies = {row[2]: row for row in rows["applies"]}
    ledger = iter(rows["ledger"])
    ops: list[list[tuple[str, Any]]] = []
    for e in events:
        if e.kind == "sample":
            ops.append([("sample", next(samples))])
            continue
        writes: list[tuple[str, Any]] = [("event", next(events_rows))]
        if isinstance(e, ApplyStarted):
            writes.append(("start", applies[e.target][:8]))
        elif isinstance(e, ApplyFinished):
            done = (e.ts, e.outcome, e.reason, e.duration, _tail(applies[e.target]))
            writes.append(("finish", done + (rollout_id, e.target)))
            if e.outcome == "ok":
                writes.append(("ledger", next(ledger)))
        ops.append(writes)
    return ops


def _tail(row: Any) -> str:
    return row[12] or ""


_SQL = {
    "start": "INSERT INTO applies (rollout_id, wave, target, action, version, from_version, "
    "command, started) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
    "finish": "UPDATE applies SET finished = %s, outcome = %s, reason = %s, duration = %s, "
    "output_tail = %s WHERE id = (SELECT max(id) FROM applies WHERE rollout_id = %s "
    "AND target = %s AND outcome = 'started')",
    "ledger": "INSERT INTO ledger (target, module, version, since, rollout_id, action) "
    "VALUES (%s, %s, %s, %s, %s, %s)",
}
_EV_SQL = "INSERT INTO event_log (rollout_id, seq, ts, kind, data) VALUES (%s, %s, %s, %s, %s)"
_SA_SQL = (
    "INSERT INTO samples (rollout_id, seq, wave, check_name, target, phase, ts, value, "
    "baseline, outcome, reason) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


_COLUMNS = {
    "event_log": "rollout_id, seq, ts, kind, data",
    "samples": "rollout_id, seq, wave, check_name, target, phase, ts, value, baseline, "
    "outcome, reason",
    "applies": "rollout_id, wave, target, action, version, from_version, command, started, "
    "finished, outcome, reason, duration, output_tail",
    "ledger": "target, module, version, since, rollout_id, action",
}


def _transaction(conn: Any, rows: list[Any], samples: list[Any], others: list[Any]) -> None:
    """One transaction written as the recorder's is: pipelined, the event and sample rows by
    ``COPY`` from COPY_ROWS rows on (the pipeline synced before it, and pipelined again after),
    else ``executemany``; the applies' statements after them, each run of one statement in one
    ``executemany``, the ledger entries last."""
    cur = conn.cursor()
    pipeline = contextlib.ExitStack()
    pipeline.enter_context(conn.pipeline())
    cur.execute("BEGIN")
    for table, sql, batch in (("event_log", _EV_SQL, rows), ("samples", _SA_SQL, samples)):
        if len(batch) >= COPY_ROWS:
            pipeline.close()
            with cur.copy(f"COPY {table} ({_COLUMNS[table]}) FROM STDIN") as copy:
                for row in batch:
                    copy.write_row(row)
            pipeline = contextlib.ExitStack()
            pipeline.enter_context(conn.pipeline())
        elif batch:
            cur.executemany(sql, batch)
    # Each run of one statement in one executemany, the ledger's last (group_commit.runs).
    merged: list[tuple[str, list[Any]]] = []
    for op, row in [o for o in others if o[0] != "ledger"] + [
        o for o in others if o[0] == "ledger"
    ]:
        if merged and merged[-1][0] == op:
            merged[-1][1].append(row)
        else:
            merged.append((op, [row]))
    for op, rows_of_op in merged:
        cur.executemany(_SQL[op], rows_of_op)
    cur.execute("COMMIT")
    pipeline.close()
    cur.close()


def same_commits(events: list[Event], url: str, commits: list[int]) -> tuple[float, float]:
    """The rows written raw, one pipelined transaction where the recorder began each of its
    ``commits`` (events fed by then) and one at the end: each with the rows fed since the last."""
    import psycopg

    from sluice.engine.store.postgres import PostgresDatabase

    conn = psycopg.connect(url, autocommit=True)
    PostgresDatabase(conn, url).migrate(SCHEMA_VERSION)
    ops = _ops(events, 1)
    with Timer() as timer:
        done = 0
        for point in commits:
            rows: list[Any] = []
            samples: list[Any] = []
            others: list[tuple[str, Any]] = []
            for writes in ops[done:point]:
                for op, row in writes:
                    if op == "event":
                        rows.append(row)
                    elif op == "sample":
                        samples.append(row)
                    else:
                        others.append((op, row))
            done = point
            _transaction(conn, rows, samples, others)
    conn.close()
    if done != len(events):
        raise SystemExit("the recorder's last commit was not after the last event")
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
    columns = _COLUMNS
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
        schedule = await schedule_of(
            estate_path, _database(url, f"b_sched_{os.getpid()}"), args.events
        )
        events = [e for op, e in schedule if op == "event"]
        n = len(events)
        applies = sum(isinstance(e, (ApplyStarted, ApplyFinished)) for e in events)
        launches = sum(op == "launch" for op, _ in schedule)
        turns = sum(op == "turn" for op, _ in schedule)
        driven = sum(op == "commit" for op, _ in schedule)
        print(
            f"{n:,} events ({applies:,} apply starts/finishes), {launches:,} launch checks, "
            f"{turns:,} turns of the event loop between them; the driven run made {driven:,} "
            "history transactions meanwhile (recorder and lease heartbeat)"
        )
        timings: dict[str, list[tuple[float, float]]] = {"rec": [], "same": [], "copy": []}
        made: list[int] = []
        for i in range(args.repeat):
            stamp = f"{os.getpid()}_{i}_{time.time_ns() % 10**6}"
            rec_url, same_url = _database(url, f"b_rec_{stamp}"), _database(url, f"b_same_{stamp}")
            wall, cpu, commits = await record(schedule, estate_path, rec_url)
            timings["rec"].append((wall, cpu))
            made.append(len(commits))
            timings["same"].append(same_commits(events, same_url, commits))
            timings["copy"].append(one_copy(events, _database(url, f"b_copy_{stamp}")))
            if i == 0 and stored(rec_url) != stored(same_url):
                raise SystemExit("the same-commits floor did not write the recorder's rows")
        print(
            f"the recorder's transactions (measured, each repetition; the floor makes the same): "
            f"{', '.join(f'{c:,}' for c in made)} — {n / statistics.median(made):,.0f} events each"
        )
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
