"""kill -9 at random moments, then resume: nothing finished is applied twice, nothing is lost.

A real ``sluice run --headless`` drives a 220-target estate whose ``local`` apply appends the target
and version to a file. It is SIGKILLed when the file (or the history) reaches a random point, then
``sluice resume`` takes over the dead driver's lease — and is itself killed, sometimes — until a
last resume completes the rollout. The file is the ground truth of what really ran.

Set ``SLUICE_CRASH_SEED`` to replay a failing run's kill points (the seed is printed).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from orphan_applies import OrphanRuns, apply_command, estate_name

REPO = Path(__file__).resolve().parents[1]
FAST = ("--headless", "--time-scale", "0")
#: channel → (targets, waves, checked): 220 targets in 7 waves; some soaks measure a check.
CHANNELS = {
    "canary": (10, None, True),
    "early": (40, '[5, "100%"]', False),
    "main": (70, None, True),
    "late": (100, '[10, "50%", "100%"]', False),
}
TARGETS = sum(n for n, _, _ in CHANNELS.values())


def write_estate(directory: Path, history: str = ".sluice/history.db") -> Path:
    parts = [f'[estate]\nname = "crashy"\nhistory = "{history}"\n']
    for name, (_, waves, checked) in CHANNELS.items():
        parts.append(
            f'[[channels]]\nname = "{name}"\nmax_parallel = 8\nmax_failures = 0\nsoak = "30s"\n'
            + (f"waves = {waves}\n" if waves else "")
            + ('checks = ["latency"]\n' if checked else "")
        )
    parts.append(
        '[executors.sh]\nkind = "local"\n'
        'apply = "sleep 0.01; echo {target} {version} >> applied.log"\n'
        '[checks.latency]\nsource = "simulated"\nmetric = "p99_latency"\nmax = 0.25\ninterval = "10s"\n'
        '[modules.op]\nversions = ["1.0", "2.0"]\ninitial = "1.0"\n'
    )
    for name, (count, _, _) in CHANNELS.items():
        parts += [
            f'[targets.{name}-{i:03d}]\nchannel = "{name}"\nexecutor = "sh"\n' for i in range(count)
        ]
    path = directory / "estate.toml"
    path.write_text("\n".join(parts))
    return path


def start(*args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sluice.cli", *map(str, args)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def log_lines(directory: Path) -> list[str]:
    path = directory / "applied.log"
    return path.read_text().splitlines() if path.exists() else []


def finished_applies(history) -> int:
    rows = history.query("SELECT COUNT(*) FROM applies WHERE outcome = 'ok'")
    return rows[0][0] if rows else 0  # no rows: the tables are being created


def kill_when(proc: subprocess.Popen[str], reached, what: str) -> bool:
    """SIGKILL ``proc`` as soon as ``reached()``; False if it ended first (nothing to kill)."""
    deadline = time.monotonic() + 120
    while not reached():
        if proc.poll() is not None:
            return False
        assert time.monotonic() < deadline, f"never reached {what}"
        time.sleep(0.002)
    proc.kill()
    proc.communicate(timeout=60)
    return True


def one_trial(directory: Path, rng: random.Random, kills: int, history) -> dict[str, int]:
    estate = write_estate(directory, history.setting)
    command: tuple[object, ...] = ("run", estate, "op@2.0", *FAST)
    killed = 0
    points = sorted(rng.sample(range(1, TARGETS - 30), kills))
    for n, point in enumerate(points):
        proc = start(*command)
        if n % 2 == 0:  # a random moment by what really ran …
            done = kill_when(proc, lambda p=point: len(log_lines(directory)) >= p, f"{point} lines")
        else:  # … or by what the history says finished
            done = kill_when(
                proc, lambda p=point: finished_applies(history) >= p, f"{point} recorded"
            )
        if not done:
            break
        killed += 1
        if killed == 1 and history.kind == "sqlite":  # a killed driver's side files are private
            for side in history.path.parent.rglob("*"):  # the history's files, the spools (0700)
                private = 0o700 if side.is_dir() else 0o600
                assert stat.S_IMODE(side.stat().st_mode) == private, side
        command = ("resume", estate, *FAST)
    final = subprocess.run(
        [sys.executable, "-m", "sluice.cli", *map(str, command)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
    if killed:
        assert "took over the lease" in final.stdout

    assert history.query("SELECT outcome, exit_code FROM rollouts") == [("done", 0)]
    rows: dict[str, list[str]] = {}
    for target, outcome in history.query("SELECT target, outcome FROM applies ORDER BY id"):
        rows.setdefault(target, []).append(outcome)
    ledger = dict(history.query("SELECT target, version FROM ledger ORDER BY id"))
    seqs = [s for (s,) in history.query("SELECT seq FROM events ORDER BY seq")]
    [(takeovers,)] = history.query("SELECT COUNT(*) FROM lease_log WHERE action = 'takeover'")
    [(lease,)] = history.query("SELECT COUNT(*) FROM lease")
    lines = log_lines(directory)
    ran = Counter(line.split()[0] for line in lines)
    assert {line.split()[1] for line in lines} == {"2.0"}
    assert len(ran) == len(rows) == len(ledger) == TARGETS
    assert set(ledger.values()) == {"2.0"}
    for target, outcomes in rows.items():
        # At most one finished apply, the last one: after it, the target was never run again.
        assert outcomes[-1] == "ok" and set(outcomes[:-1]) <= {"started"}, (target, outcomes)
        # Every run of the command was recorded as started before it was launched …
        assert 1 <= ran[target] <= len(outcomes), (target, outcomes, ran[target])
        # … so a target that never had an unknown apply ran exactly once.
        if outcomes == ["ok"]:
            assert ran[target] == 1, target
    assert seqs == list(range(1, len(seqs) + 1))  # each driver continued the stream
    assert 1 <= takeovers <= killed if killed else takeovers == 0
    assert lease == 0
    unknown = sum(len(o) - 1 for o in rows.values())
    return {"killed": killed, "unknown": unknown, "reran": len(lines) - TARGETS}


@pytest.mark.timeout(900)
def test_kill_9_at_random_moments_then_resume_never_double_applies(tmp_path, histories):
    seed = int(os.environ.get("SLUICE_CRASH_SEED", time.time_ns() % 2**32))
    print(f"SLUICE_CRASH_SEED={seed}")
    rng = random.Random(seed)
    results = []
    for trial, kills in enumerate((1, 2, 1, 3)):
        directory = tmp_path / f"trial-{trial}"
        directory.mkdir()
        results.append(one_trial(directory, rng, kills, histories(directory)))
    print(results)
    assert sum(r["killed"] for r in results) >= 4  # the kills did land mid-rollout


@pytest.mark.timeout(120)
def test_unknown_applies_are_left_for_the_operator_with_no_reapply_unknown(
    tmp_path: Path, histories
) -> None:
    """An apply started but never finished stops `resume --no-reapply-unknown`; plain resume redoes it."""
    history = histories(tmp_path)
    estate = tmp_path / "estate.toml"
    estate.write_text(
        f'[estate]\nname = "unknowns"\nhistory = "{history.setting}"\n[[channels]]\nname = "only"\nmax_parallel = 2\n'
        '[executors.sh]\nkind = "local"\n'
        'apply = "echo {target} >> started.log; if [ {target} = slow ]; then sleep 61.37; fi"\n'
        '[modules.op]\nversions = ["1", "2"]\ninitial = "1"\n'
        '[targets.fast]\nchannel = "only"\nexecutor = "sh"\n'
        '[targets.slow]\nchannel = "only"\nexecutor = "sh"\n'
    )
    driver = start("run", estate, "op@2", *FAST)
    log = tmp_path / "started.log"
    deadline = time.monotonic() + 60

    def fast_recorded_ok() -> bool:
        return history.query("SELECT outcome FROM applies WHERE target = 'fast'") == [("ok",)]

    # Kill once `slow` is running and `fast` is durably finished (on a loaded machine `fast` can lag).
    while not (log.exists() and "slow" in log.read_text() and fast_recorded_ok()):
        assert time.monotonic() < deadline, "the applies never got there"
        time.sleep(0.05)
    driver.kill()
    driver.wait(30)
    # The whole apply, wrapper too, killed: no process and no status left, its outcome unknown.
    found = subprocess.run(["pgrep", "-f", "sleep 61.37"], capture_output=True, text=True)
    for pid in map(int, found.stdout.split()):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)

    halted = subprocess.run(
        [sys.executable, "-m", "sluice.cli", "resume", str(estate), *FAST, "--no-reapply-unknown"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert halted.returncode == 4, halted.stdout + halted.stderr  # stopped, resumable
    assert "unknown outcome" in halted.stdout and "slow" in halted.stdout
    assert log.read_text().count("slow") == 1  # not re-applied

    estate.write_text(estate.read_text().replace("sleep 61.37", "true"))
    done = subprocess.run(
        [sys.executable, "-m", "sluice.cli", "resume", str(estate), *FAST],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert log.read_text().count("slow") == 2  # re-applied once, by the plain resume
    assert log.read_text().count("fast") == 1  # finished before the crash: never again


@pytest.mark.timeout(180)
def test_resume_waits_for_an_apply_the_killed_driver_left_running(
    tmp_path: Path, histories
) -> None:
    """kill -9 leaves local applies running (own session): with their spools gone (nothing to
    adopt — test_adopt_resume.py has the adopting cases), resume must still not overlap them."""
    history = histories(tmp_path)
    estate = tmp_path / "estate.toml"
    estate.write_text(
        f'[estate]\nname = "{estate_name()}"\nhistory = "{history.setting}"\n[[channels]]\nname = "only"\nmax_parallel = 2\n'
        f'[executors.sh]\nkind = "local"\napply = "{apply_command(tmp_path)}"\n'
        '[modules.op]\nversions = ["1", "2"]\ninitial = "1"\n'
        '[targets.a]\nchannel = "only"\nexecutor = "sh"\n'
        '[targets.b]\nchannel = "only"\nexecutor = "sh"\n'
    )
    OrphanRuns(tmp_path).kill_mid_apply_then_resume(
        start("run", estate, "op@2", *FAST),
        lambda: (
            shutil.rmtree(tmp_path / ".sluice" / "applies"),
            start("resume", estate, *FAST, "--json"),
        )[1],
        alive=lambda pid: os.path.exists(f"/proc/{pid}"),
    )
