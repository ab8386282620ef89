"""History: recorder throughput against raw sqlite3, replay loading, database size per rollout.

Run: ``.venv/bin/python bench/bench_history.py [--events N] [--repeat R] [--size-targets N]
[--profile] [--backend sqlite|postgresql [--url URL]]`` (PostgreSQL: bench/bench_history_pg.py)

1. **Recorder append throughput**, on two streams of 100,000 events: (a) the first events of a
   real simulated rollout — the engine's own mix: samples (two thirds: each a ``samples`` row),
   output lines, and the applies' starts and finishes, each of which the recorder commits at once
   (that is the durability contract: ~11,000 transactions here); (b) output lines only, the
   batched hot path. They are fed to a :class:`~sluice.engine.store.recorder.Recorder` inside a running event
   loop, as the engine does. The same run writes the same rows — ``event_log``, ``samples``,
   ``applies`` and ``ledger``, checked equal to the recorder's afterwards — with raw
   ``sqlite3.executemany`` in one transaction, on a file with the same settings, twice: from the
   events (the row building any writer pays: a sample's fields as they are, any other event's as
   ``json.dumps``, each apply's row in its final state) and from rows already built (insert only).
   Goals (issue 4): ≥ 50,000 events/s and within 2× of raw (serialise + insert).
2. **Replay loading.** Opening that 100,000-event rollout as a
   :class:`~sluice.engine.store.replay.ReplaySource` (ready to play and seek), and decoding every event.
   Goal: < 1 s.
3. **Database size per 10,000-target rollout.** A 10,000-target simulated rollout run through a
   :class:`~sluice.engine.app.session.Session` at ``--time-scale 0`` (4 channels, 2 checks, 60 s soaks
   measured every 10 s — the history of a real rollout), then the file's size after closing.

Every timing is the median of ``--repeat`` repetitions (fresh files each time), as wall time and
as this process's cpu time (user + system): goals are judged on wall time, and the cpu figure says
whether a miss is the machine's load. Sizes are exact. The exit status is 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import gc
import json
import os
import pstats
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tomli_w  # noqa: E402

from sluice.engine.app.session import Session  # noqa: E402
from sluice.engine.model.estate import Estate, load_estate  # noqa: E402
from sluice.engine.model.plan import make_plan  # noqa: E402
from sluice.engine.rollout.events import (  # noqa: E402
    ApplyFinished,
    ApplyOutput,
    ApplyStarted,
    Event,
    EventBus,
    SampleTaken,
)
from sluice.engine.rollout.options import RolloutOptions  # noqa: E402
from sluice.engine.rollout.orchestrator import Rollout  # noqa: E402
from sluice.engine.store.history import WAL_CHECKPOINT_BYTES, History  # noqa: E402
from sluice.engine.store.recorder import TAIL_LINES, Recorder  # noqa: E402
from sluice.engine.store.replay import ReplaySource  # noqa: E402
from sluice.engine.support.clock import Clock  # noqa: E402

GOAL_EVENTS_PER_SECOND = 50_000
GOAL_RATIO = 2.0
GOAL_LOAD_SECONDS = 1.0
CHANNELS = 4

#: The raw floor's statements, by table.
INSERTS = {
    "event_log": "INSERT INTO event_log (rollout_id, seq, ts, kind, data) VALUES (?, ?, ?, ?, ?)",
    "samples": "INSERT INTO samples (rollout_id, seq, wave, check_name, target, phase, ts, value, "
    "baseline, outcome, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "applies": "INSERT INTO applies (rollout_id, wave, target, action, version, from_version, "
    "command, started, finished, outcome, reason, duration, output_tail) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "ledger": "INSERT INTO ledger (target, module, version, since, rollout_id, action) "
    "VALUES (?, ?, ?, ?, ?, ?)",
}


def estate_file(directory: Path, targets: int) -> Path:
    """A simulated estate like a real one: checked soaks, several waves per channel."""
    per_channel = targets // CHANNELS
    doc = {
        "estate": {"name": "bench-history", "history": "history.db"},
        "channels": [
            {
                "name": f"ch{c}",
                "max_parallel": 1000,
                "max_failures": "5%",
                "soak": "60s",
                "waves": [1, "25%", "100%"] if c else [1, "100%"],
                "checks": ["p99_latency", "error_rate"],
            }
            for c in range(CHANNELS)
        ],
        "executors": {"sim": {"kind": "simulated", "duration": "0s", "failure_rate": 0.0}},
        "checks": {
            "p99_latency": {
                "source": "simulated",
                "metric": "p99_latency",
                "max": 0.25,
                "max_increase": "50%",
                "interval": "10s",
                "failure_limit": 1,
            },
            "error_rate": {
                "source": "simulated",
                "metric": "error_rate",
                "max": 0.01,
                "interval": "10s",
            },
        },
        "modules": {"op": {"versions": ["1.0", "2.0"], "initial": "1.0"}},
        "targets": {
            f"t{c}-{i:05d}": {"channel": f"ch{c}", "executor": "sim"}
            for c in range(CHANNELS)
            for i in range(per_channel)
        },
    }
    path = directory / "estate.toml"
    path.write_text(tomli_w.dumps(doc))
    return path


async def stream_of(estate: Estate, count: int) -> list[Event]:
    """The first ``count`` events of a simulated rollout (no history attached)."""
    bus = EventBus()
    events: list[Event] = []
    bus.listen(events.append)
    rollout = Rollout(
        estate,
        make_plan(estate, "op", "2.0"),
        bus=bus,
        clock=Clock(0),
        options=RolloutOptions(interactive=False),
    )
    outcome = await rollout.run()
    if outcome.outcome != "done" or len(events) < count:
        raise SystemExit(f"the stream rollout gave {len(events)} events, {outcome}")
    return events[:count]


def new_history(directory: Path, name: str) -> tuple[History, int]:
    history = History.open(directory / name)
    rollout_id = history.create_rollout(
        estate="bench", module="op", version="2.0", from_versions="1.0", actor="bench",
        host="bench", plan={"waves": []}, started=time.time(),
    )  # fmt: skip
    return history, rollout_id


class Timer:
    """Wall-clock and CPU (user + system of this process) seconds of a block."""

    def __enter__(self) -> Timer:
        gc.collect()
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu

    @property
    def both(self) -> tuple[float, float]:
        return self.wall, self.cpu


async def record(events: list[Event], directory: Path, name: str) -> tuple[float, float]:
    history, rollout_id = new_history(directory, name)
    recorder = Recorder(history, rollout_id, "op")
    with Timer() as timer:
        for event in events:
            recorder(event)
        recorder.flush()
    history.close()
    return timer.both


Rows = dict[str, list[tuple]]


def rows_of(events: list[Event], rollout_id: int) -> Rows:
    """Every row the recorder writes, built the plain way, by table: a sample's fields as its
    ``samples`` row; any other event's fields but seq, ts and kind as compact JSON
    (``json.dumps``, each class's field names looked up once); each apply's ``applies`` row in its
    final state (finished, outcome, output tail) and the ledger row of each that succeeded."""
    names: dict[type, list[str]] = {}
    rows: Rows = {"event_log": [], "samples": [], "applies": [], "ledger": []}
    tails: dict[str, deque[str]] = {}
    applies: dict[str, list] = {}
    for e in events:
        cls = type(e)
        if cls is SampleTaken:
            rows["samples"].append(
                (rollout_id, e.seq, e.wave, e.check, e.target, e.phase, e.ts, e.value, e.baseline,
                 e.outcome, e.reason)
            )  # fmt: skip
            continue
        if cls not in names:
            names[cls] = [f.name for f in dataclasses.fields(cls) if f.name not in ("seq", "ts")]
        data = json.dumps(
            {n: getattr(e, n) for n in names[cls]}, separators=(",", ":"), default=str
        )
        rows["event_log"].append((rollout_id, e.seq, e.ts, e.kind, data))
        if isinstance(e, ApplyOutput):
            tails.setdefault(e.target, deque(maxlen=TAIL_LINES)).append(f"{e.stream}: {e.line}")
        elif isinstance(e, ApplyStarted):
            tails.pop(e.target, None)
            applies[e.target] = [
                rollout_id, e.wave, e.target, e.action, e.version, e.from_version, e.command,
                e.ts, None, "started", None, None, None,
            ]  # fmt: skip
            rows["applies"].append(applies[e.target])  # type: ignore[arg-type]
        elif isinstance(e, ApplyFinished):
            tail = "\n".join(tails.pop(e.target, ()))
            applies.pop(e.target)[8:] = [e.ts, e.outcome, e.reason, e.duration, tail]
            if e.outcome == "ok":
                rows["ledger"].append((e.target, "op", e.version, e.ts, rollout_id, e.action))
    return rows


def raw(events: list[Event], directory: Path, name: str, *, prebuilt: bool) -> tuple[float, float]:
    """The rows written with ``sqlite3.executemany`` in one transaction, with the history's own
    settings (same page size, same checkpointing)."""
    history, rollout_id = new_history(directory, name)
    history.close()
    conn = sqlite3.connect(directory / name, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_BYTES // page_size}")
    built = rows_of(events, rollout_id) if prebuilt else None
    with Timer() as timer:
        rows = built or rows_of(events, rollout_id)
        conn.execute("BEGIN")
        for table, sql in INSERTS.items():
            conn.executemany(sql, rows[table])
        conn.execute("COMMIT")
    conn.close()
    return timer.both


def stored(path: Path) -> Rows:
    """What a file holds of the stream: the rows of each table the recorder writes."""
    conn = sqlite3.connect(path)
    try:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall()
            for table, key in (
                ("event_log", "seq"), ("samples", "seq"), ("applies", "id"), ("ledger", "id")
            )
        }  # fmt: skip
    finally:
        conn.close()


def load(path: Path, rollout_id: int) -> dict[str, tuple[float, float]]:
    """Open a ReplaySource, decode all its events; ``History.events`` (eager) for comparison."""
    history = History.open(path, create=False)
    try:
        with Timer() as ready:
            source = ReplaySource(history, rollout_id)
        with Timer() as decoded:
            count = sum(1 for _ in source.events)
        with Timer() as eager:
            assert len(history.events(rollout_id)) == count
        return {"ready": ready.both, "decoded": decoded.both, "eager": eager.both}
    finally:
        history.close()


async def size_of_rollout(targets: int, directory: Path) -> dict[str, float]:
    estate = load_estate(estate_file(directory, targets))
    session = Session.open(estate)
    try:
        rollout = session.new_rollout(session.plan("op", "2.0"), clock=Clock(0), interactive=False)
        started = time.perf_counter()
        outcome = await session.drive(rollout)
        took = time.perf_counter() - started
        if outcome.outcome != "done":
            raise SystemExit(f"the size rollout did not complete: {outcome}")
        counts = {
            table: session.history.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("events", "samples", "applies", "ledger")
        }
    finally:
        session.close()
    size = estate.history_path.stat().st_size
    return {"bytes": size, "seconds": took, **counts}


def median(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    return (
        statistics.median(wall for wall, _ in pairs),
        statistics.median(cpu for _, cpu in pairs),
    )


def show(pairs: list[tuple[float, float]]) -> str:
    wall, cpu = median(pairs)
    walls = [w for w, _ in pairs]
    return f"{wall:6.3f} s ({min(walls):.3f}–{max(walls):.3f}), cpu {cpu:6.3f} s"


def output_stream(count: int) -> list[Event]:
    """``count`` output lines of 10,000 targets' applies: the stream's most frequent event."""
    bus = EventBus()
    events: list[Event] = []
    bus.listen(events.append)
    for i in range(count):
        target = f"t{i % CHANNELS}-{i % 10_000:05d}"
        bus.emit(
            ApplyOutput,
            target=target,
            stream="stdout",
            line=f"{target}: module.operator.helm_release.this: Modifying... [id=op, step {i // 10_000}]",
        )
    return events


def describe(events: list[Event]) -> str:
    kinds: dict[str, int] = {}
    for e in events:
        kinds[e.kind] = kinds.get(e.kind, 0) + 1
    return ", ".join(f"{k} {v:,}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]))


def judged(value: tuple[float, float], ok: Callable[[float], bool]) -> tuple[bool, str]:
    """Goals are judged on wall time; cpu time says whether a miss is the machine's load."""
    wall, cpu = ok(value[0]), ok(value[1])
    return wall, "" if wall or not cpu else " on wall time (meets it on cpu time)"


async def append_section(
    title: str, events: list[Event], work: Path, repeat: int
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Recorder vs raw on ``events``; returns the medians (recorder, raw serialise + insert)."""
    timings: dict[str, list[tuple[float, float]]] = {"recorder": [], "raw": [], "insert": []}
    for rep in range(repeat):
        timings["recorder"].append(await record(events, work, f"{title}-rec-{rep}.db"))
        timings["raw"].append(raw(events, work, f"{title}-raw-{rep}.db", prebuilt=False))
        timings["insert"].append(raw(events, work, f"{title}-pre-{rep}.db", prebuilt=True))
    n = len(events)
    # The floor is honest only if it writes what the recorder wrote: the same rows, byte for byte.
    written = stored(work / f"{title}-rec-0.db")
    for floor in ("raw", "pre"):
        if stored(work / f"{title}-{floor}-0.db") != written:
            raise SystemExit(f"{title}: the {floor} floor did not write the recorder's rows")
    counts = ", ".join(f"{len(rows):,} {table}" for table, rows in written.items())
    recorder, raw_time, insert_time = (median(timings[k]) for k in ("recorder", "raw", "insert"))
    size = (work / f"{title}-rec-0.db").stat().st_size
    print(f"\n1{title[0]}. append {n:,} events — {title}: {describe(events)}")
    print(
        f"   file {size / 1e6:.1f} MB ({size / n:.0f} bytes/event, with the rows derived from it); "
        f"rows: {counts}"
    )
    print(
        f"   recorder                             {show(timings['recorder'])}"
        f"  {n / recorder[0]:>8,.0f} events/s (cpu: {n / recorder[1]:,.0f})"
    )
    for name, label, other in (
        ("raw", "raw executemany (serialise + insert)", raw_time),
        ("insert", "raw executemany (insert only)       ", insert_time),
    ):
        print(
            f"   {label} {show(timings[name])}  {n / other[0]:>8,.0f} events/s; "
            f"recorder/raw {recorder[0] / other[0]:.2f}× (cpu: {recorder[1] / other[1]:.2f}×)"
        )
    return recorder, raw_time


async def main_async(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="bench-history-"))
    try:
        load_average, cores = os.getloadavg()[0], os.cpu_count() or 1
        print(f"machine: {cores} cores, load average {load_average:.1f}")
        stream_targets = max(CHANNELS, args.events // 18)  # ≈ 20 events per target
        estate = load_estate(estate_file(work, stream_targets))
        rollout_events = await stream_of(estate, args.events)

        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            await record(rollout_events, work, "profile.db")
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
            return 0

        print(
            f"{args.repeat} repetitions of each; times are the median wall time (min–max) and the "
            "median cpu time of this process"
        )
        n = args.events
        goals: list[tuple[str, tuple[bool, str]]] = []
        for title, events in (
            ("a rollout's stream", rollout_events),
            ("output lines", output_stream(n)),
        ):
            recorder, raw_time = await append_section(title, events, work, args.repeat)
            goals.append(
                (
                    f"{title}: ≥ {GOAL_EVENTS_PER_SECOND:,} events/s",
                    judged(recorder, lambda t: n / t >= GOAL_EVENTS_PER_SECOND),
                )
            )
            goals.append(
                (
                    f"{title}: within {GOAL_RATIO:.0f}× of raw (serialise + insert)",
                    judged(
                        (recorder[0] / raw_time[0], recorder[1] / raw_time[1]),
                        lambda r: r <= GOAL_RATIO,
                    ),
                )
            )

        timings: dict[str, list[tuple[float, float]]] = {"ready": [], "decoded": [], "eager": []}
        for rep in range(args.repeat):
            for name, pair in load(work / f"a rollout's stream-rec-{rep}.db", 1).items():
                timings[name].append(pair)
        ready = median(timings["ready"])
        print(f"\n2. load the {n:,}-event rollout for replay")
        print(f"   ReplaySource ready (rows read, seekable) {show(timings['ready'])}")
        print(f"   then every event decoded                 {show(timings['decoded'])}")
        print(f"   History.events (decoded list)            {show(timings['eager'])}")
        goals.append(
            (
                f"replay source ready < {GOAL_LOAD_SECONDS:.0f} s",
                judged(ready, lambda t: t < GOAL_LOAD_SECONDS),
            )
        )

        if args.size_targets:
            directory = work / "size"
            directory.mkdir()
            result = await size_of_rollout(args.size_targets, directory)
            mb = result["bytes"] / 1e6
            print(f"\n3. one {args.size_targets:,}-target rollout through a Session (time scale 0)")
            print(
                f"   {mb:.1f} MB ({result['bytes'] / args.size_targets:,.0f} bytes/target): "
                f"{result['events']:,} events, {result['samples']:,} samples, "
                f"{result['applies']:,} applies, {result['ledger']:,} ledger rows; "
                f"ran in {result['seconds']:.1f} s"
            )
        print()
        load_average = os.getloadavg()[0]
        if load_average > cores:
            print(f"note: the machine is busy (load {load_average:.1f} on {cores} cores)")
        for goal, (met, note) in goals:
            print(f"goal: {goal} — {'meets' if met else 'MISSES'} it{note}")
        return 0 if all(met for _, (met, _) in goals) else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--size-targets", type=int, default=10_000, help="0 skips the database-size rollout"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the recorder instead")
    parser.add_argument(
        "--backend",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="postgresql: the recorder on a PostgreSQL history (bench/bench_history_pg.py)",
    )
    parser.add_argument(
        "--url", help="with --backend postgresql: a server's URL (default: start one)"
    )
    args = parser.parse_args()
    if args.backend == "postgresql":
        import bench_history_pg

        return asyncio.run(bench_history_pg.main_async(args))
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
