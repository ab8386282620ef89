"""The kill trial (issue 11): ``kill -9`` a 500-target local rollout 20 times, resume each time.

Run: ``.venv/bin/python bench/bench_kill.py [--targets 500] [--kills 20] [--seed S]``

A real ``sluice run --headless`` drives an estate of ``--targets`` targets (5 channels, 8 applies at
a time) whose ``local`` apply sleeps 10 ms and appends ``TARGET VERSION`` to ``applied.log`` as its
last act — a line there means that apply finished. The driver is SIGKILLed at ``--kills`` random
moments (by lines written, alternately by applies the history records finished), each time followed
by a ``sluice resume``, until a last resume completes the rollout. Then it counts:

- **re-run after finishing**: targets with more than one line in ``applied.log`` — an apply that
  had finished and was run again. The goal is 0 (before spooling: 81 of 500 with seed 211364063;
  after: 0).
- unknown applies (started, never finished, when a driver died), and of them how many a resume
  adopted (``apply_adopted`` events: still running → re-attached, finished → its status read) and
  how many it re-applied (no process and no status: killed before the command started).

The exit status is 1 when a finished apply ran again, or the rollout did not end ``done``.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAST = ("--headless", "--time-scale", "0")
CHANNELS = ("canary", "early", "main", "late", "last")


def write_estate(directory: Path, targets: int) -> Path:
    parts = ['[estate]\nname = "kill-trial"\n']
    for name in CHANNELS:
        parts.append(f'[[channels]]\nname = "{name}"\nmax_parallel = 8\nmax_failures = 0\n')
    parts.append(
        '[executors.sh]\nkind = "local"\n'
        'apply = "sleep 0.01; echo {target} {version} >> applied.log"\n'
        '[modules.op]\nversions = ["1.0", "2.0"]\ninitial = "1.0"\n'
    )
    for i in range(targets):
        channel = CHANNELS[min(i * len(CHANNELS) // targets, len(CHANNELS) - 1)]
        parts.append(f'[targets.t{i:04d}]\nchannel = "{channel}"\nexecutor = "sh"\n')
    path = directory / "estate.toml"
    path.write_text("\n".join(parts))
    return path


def lines(directory: Path) -> list[str]:
    path = directory / "applied.log"
    return path.read_text().splitlines() if path.exists() else []


def recorded_ok(db: Path) -> int:
    try:
        conn = sqlite3.connect(db, timeout=10)
        try:
            return conn.execute("SELECT COUNT(*) FROM applies WHERE outcome = 'ok'").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return 0


def start(*args: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "sluice.cli", *map(str, args)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def trial(directory: Path, targets: int, kills: int, rng: random.Random) -> dict[str, object]:
    estate = write_estate(directory, targets)
    db = directory / ".sluice" / "history.db"
    command: tuple[object, ...] = ("run", estate, "op@2.0", *FAST)
    points = sorted(rng.sample(range(1, targets - 10), kills))
    killed = 0
    began = time.monotonic()
    for n, point in enumerate(points):
        proc = start(*command)
        reached = (
            (lambda p=point: len(lines(directory)) >= p)
            if n % 2 == 0
            else (lambda p=point: recorded_ok(db) >= p)
        )
        while not reached() and proc.poll() is None:
            time.sleep(0.002)
        if proc.poll() is not None:
            break
        proc.kill()
        proc.wait()
        killed += 1
        command = ("resume", estate, *FAST)
    final = subprocess.run(
        [sys.executable, "-m", "sluice.cli", *map(str, command)], cwd=REPO, capture_output=True
    )
    seconds = time.monotonic() - began
    conn = sqlite3.connect(db)
    try:
        outcome = conn.execute("SELECT outcome FROM rollouts").fetchall()
        rows = conn.execute("SELECT target, outcome FROM applies").fetchall()
        adopted = Counter(
            json.loads(data)["how"]
            for (data,) in conn.execute("SELECT data FROM events WHERE kind = 'apply_adopted'")
        )
    finally:
        conn.close()
    ran = Counter(line.split()[0] for line in lines(directory))
    per_target = Counter(target for target, _ in rows)
    unknown = sum(n - 1 for n in per_target.values()) + sum(adopted.values())
    return {
        "targets": targets,
        "kills": killed,
        "final_exit": final.returncode,
        "outcome": [o for (o,) in outcome],
        "applied_targets": len(ran),
        "rerun_after_finishing": sum(1 for n in ran.values() if n > 1),
        "unknown_applies": unknown,
        "adopted_running": adopted.get("running", 0),
        "adopted_finished": adopted.get("finished", 0),
        "reapplied_never_started": sum(n - 1 for n in per_target.values()),
        "seconds": round(seconds, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=500)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else time.time_ns() % 2**32
    print(f"seed {seed}")
    with tempfile.TemporaryDirectory(prefix="sluice-kill-") as tmp:
        result = trial(Path(tmp), args.targets, args.kills, random.Random(seed))
    for key, value in result.items():
        print(f"{key:>26}: {value}")
    good = (
        result["rerun_after_finishing"] == 0
        and result["outcome"] == ["done"]
        and result["applied_targets"] == args.targets
    )
    print("goal (0 finished applies run again, rollout done):", "met" if good else "MISSED")
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
