"""Applies that outlive their driver (issue 11): kill -9 `sluice run` mid-apply, then resume.

Real `sluice` processes, real shells. Each target's apply logs ``start TARGET PID`` to runs.log,
prints a line every 20 ms until its ``release-TARGET`` file exists (the output that used to kill
it by SIGPIPE once sluice was gone), then logs ``end TARGET PID`` and touches ``done-TARGET``.
runs.log is the ground truth of how many times each target really ran.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sluice.engine.model.template import MASK

REPO = Path(__file__).resolve().parents[1]
FAST = ("--headless", "--time-scale", "0")
TARGETS = ("a", "b")


def write_estate(directory: Path, *, exit_code: int = 0) -> Path:
    apply = (
        f"echo start {{target}} $$ >> {directory}/runs.log; i=0; "
        f"while [ ! -e {directory}/release-{{target}} ]; do i=$((i+1)); echo tick $i; sleep 0.02; done; "
        f"echo end {{target}} $$ >> {directory}/runs.log; echo last words of {{target}}; "
        f"touch {directory}/done-{{target}}; exit {exit_code}"
    )
    estate = directory / "estate.toml"
    estate.write_text(
        f'[estate]\nname = "adopt-{time.time_ns()}"\n'
        '[[channels]]\nname = "only"\nmax_parallel = 2\nmax_failures = 0\n'
        f'[executors.sh]\nkind = "local"\napply = "{apply}"\n'
        '[modules.op]\nversions = ["1", "2"]\ninitial = "1"\n'
        + "".join(f'[targets.{t}]\nchannel = "only"\nexecutor = "sh"\n' for t in TARGETS)
    )
    return estate


def start(*args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sluice.cli", *map(str, args)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def runs(directory: Path) -> list[list[str]]:
    log = directory / "runs.log"
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def wait_until(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def spooled_ticks(directory: Path, target: str) -> int:
    logs = list((directory / ".sluice" / "applies").glob(f"*/{target}.*.log"))
    return sum(p.read_text().count("tick") for p in logs)


def run_and_kill(directory: Path, estate: Path) -> dict[str, int]:
    """`sluice run`, SIGKILLed once both applies have started printing; their pids."""
    driver = start("run", estate, "op@2", *FAST)
    wait_until(lambda: all(spooled_ticks(directory, t) >= 5 for t in TARGETS), "ticks")
    driver.kill()
    driver.communicate(timeout=60)
    return {target: int(pid) for _, target, pid in runs(directory)}


def resume(estate: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sluice.cli", "resume", str(estate), *FAST, "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def release(directory: Path) -> None:
    for target in TARGETS:
        (directory / f"release-{target}").touch()


def applies(directory: Path) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(directory / ".sluice" / "history.db")
    try:
        return conn.execute("SELECT target, outcome, reason FROM applies ORDER BY id").fetchall()
    finally:
        conn.close()


def adopted_events(stdout: str) -> list[dict]:
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return [e for e in events if e["kind"] == "apply_adopted"]


@pytest.mark.timeout(120)
def test_an_apply_that_prints_outlives_a_killed_sluice_and_resume_records_it(tmp_path):
    estate = write_estate(tmp_path)
    pids = run_and_kill(tmp_path, estate)
    release(tmp_path)
    # Still printing after the kill, and it runs to its end: no SIGPIPE.
    wait_until(lambda: all((tmp_path / f"done-{t}").exists() for t in TARGETS), "the end")
    done = resume(estate)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert sorted(what for what, _, _ in runs(tmp_path)) == ["end", "end", "start", "start"]
    assert {e["target"]: e["how"] for e in adopted_events(done.stdout)} == {
        "a": "finished",
        "b": "finished",
    }
    rows = applies(tmp_path)
    assert sorted((t, o) for t, o, _ in rows) == [("a", "ok"), ("b", "ok")]
    assert all("finished while no sluice ran" in reason for _, _, reason in rows)
    assert all(not os.path.exists(f"/proc/{pid}") for pid in pids.values())


@pytest.mark.timeout(120)
def test_a_failed_apply_that_ended_while_no_sluice_ran_is_recorded_failed(tmp_path):
    estate = write_estate(tmp_path, exit_code=3)
    run_and_kill(tmp_path, estate)
    release(tmp_path)
    wait_until(lambda: all((tmp_path / f"done-{t}").exists() for t in TARGETS), "the end")
    halted = resume(estate)
    assert halted.returncode == 1, halted.stdout[-3000:]  # the failure budget (0) was spent
    assert len(runs(tmp_path)) == 4  # not run again
    for target, outcome, reason in applies(tmp_path):
        assert outcome == "failed"
        assert "exit 3" in reason and f"last words of {target}" in reason


@pytest.mark.timeout(180)
def test_resume_reattaches_to_a_running_apply_and_survives_its_own_kill(tmp_path):
    estate = write_estate(tmp_path)
    run_and_kill(tmp_path, estate)
    # A resume while the applies still run re-attaches to them (tails their spools) …
    first = start("resume", estate, *FAST, "--json")
    seen: list[str] = []
    wait_until(
        lambda: sum("re-attached" in line for line in _read_some(first, seen)) >= 2,
        "the resume to re-attach to both",
    )
    # … and is itself killed; the applies go on; a second resume finds them again.
    first.kill()
    first.communicate(timeout=60)
    assert len(runs(tmp_path)) == 2
    second = start("resume", estate, *FAST, "--json")
    seen2: list[str] = []
    wait_until(
        lambda: sum("re-attached" in line for line in _read_some(second, seen2)) >= 2,
        "the second resume to re-attach",
    )
    release(tmp_path)
    out, _ = second.communicate(timeout=120)
    seen2.append(out)
    assert second.returncode == 0, "".join(seen2)[-3000:]
    assert sorted(what for what, _, _ in runs(tmp_path)) == ["end", "end", "start", "start"]
    assert {e["how"] for e in adopted_events("".join(seen2))} == {"running"}
    assert sorted((t, o) for t, o, _ in applies(tmp_path)) == [("a", "ok"), ("b", "ok")]


def _read_some(proc: subprocess.Popen[str], seen: list[str]) -> list[str]:
    """Lines printed so far (reads whatever is ready, never blocks)."""
    import selectors

    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    while selector.select(timeout=0):
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
    selector.close()
    assert proc.poll() is None, "".join(seen)[-3000:]
    return seen


@pytest.mark.timeout(120)
def test_no_status_and_no_process_falls_back_to_reapplying(tmp_path):
    estate = write_estate(tmp_path)
    pids = run_and_kill(tmp_path, estate)
    for pid in pids.values():  # gone without a status: as if the machine had rebooted
        os.killpg(os.getpgid(pid), signal.SIGKILL)
    wait_until(lambda: all(not os.path.exists(f"/proc/{p}") for p in pids.values()), "gone")
    release(tmp_path)
    done = resume(estate)
    assert done.returncode == 0, done.stdout[-3000:]
    assert adopted_events(done.stdout) == []
    assert [what for what, _, _ in runs(tmp_path)].count("start") == 4  # re-applied


def sluice(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sluice.cli", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.mark.timeout(120)
def test_show_output_prints_the_whole_spool_masked_and_prune_removes_it(tmp_path):
    estate = tmp_path / "estate.toml"
    estate.write_text(
        '[estate]\nname = "shown"\n[[channels]]\nname = "only"\n'
        '[executors.sh]\nkind = "local"\n'
        'apply = "seq 1 200000; echo token={env.SHOW_TOKEN}; echo warned >&2"\n'
        '[modules.op]\nversions = ["1", "2"]\ninitial = "1"\n'
        '[targets.t1]\nchannel = "only"\nexecutor = "sh"\n'
    )
    env = {**os.environ, "SHOW_TOKEN": "hush-4242"}
    done = sluice("run", estate, "op@2", *FAST, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    shown = sluice("show", estate, 1, "--output", "t1", env=env)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[:200000] == [str(n) for n in range(1, 200001)]  # all of it, not the capped stream
    assert lines[200000:] == [f"token={MASK}"]  # the spool is raw; what is shown is masked
    assert shown.stderr == "warned\n"

    missing = sluice("show", estate, 1, "--output", "nope")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "no spooled output of target 'nope'" in missing.stderr

    kept = sluice("history", estate, "--prune-spools-older-than", "90d")
    assert kept.returncode == 0 and "of 0 rollout(s)" in kept.stdout
    pruned = sluice("history", estate, "--prune-spools-older-than", "0s")
    assert pruned.returncode == 0 and "of 1 rollout(s)" in pruned.stdout
    assert not (tmp_path / ".sluice" / "applies" / "1").exists()
    assert sluice("show", estate, 1, "--output", "t1").returncode == 2
    assert sluice("show", estate, 1).returncode == 0  # the records are kept
    bad = sluice("history", estate, "--prune-spools-older-than", "soon")
    assert bad.returncode == 2 and "not a duration" in bad.stderr
