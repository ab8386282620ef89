"""Spooled applies: graceful stop (stop_signal, stop_grace, a second abort), 50 MB of output with
bounded memory, the status file, the spool API the executors share."""

from __future__ import annotations

import asyncio
import resource
import time

import pytest
from rollout_helpers import Events, build_estate, channel, make_rollout, read_pids, wait_gone
from test_local_executor import Lines, executor_of, job, local_estate

from sluice.engine.executors.spool import (
    LineSplitter,
    SpoolDir,
    read_status,
)
from sluice.engine.rollout.events import ApplyFinished, ApplyOutput

CLEANUP = (
    "trap 'echo cleaning; sleep 2; echo cleaned > cleaned; exit 1' TERM; "
    "echo $$ > shell; echo ready; while :; do sleep 0.05; done"
)


@pytest.mark.timeout(30)
async def test_abort_lets_a_command_that_traps_sigterm_finish_its_cleanup(tmp_path):
    estate = local_estate(tmp_path, apply=CLEANUP, stop_grace="10s")
    lines = Lines()
    task = asyncio.get_running_loop().create_task(executor_of(estate).apply(job(), lines))
    await lines.wait_for("ready")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (tmp_path / "cleaned").read_text() == "cleaned\n"  # 2 s of cleanup, within the grace
    assert ("stdout", "cleaning") in lines.lines
    assert any("SIGTERM sent" in line for _, line in lines.lines)


@pytest.mark.timeout(30)
async def test_stop_signal_is_what_the_group_gets(tmp_path):
    estate = local_estate(
        tmp_path,
        apply="trap 'echo got INT; exit 1' INT; echo ready; while :; do sleep 0.05; done",
        stop_signal="SIGINT",
        stop_grace="10s",
    )
    lines = Lines()
    task = asyncio.get_running_loop().create_task(executor_of(estate).apply(job(), lines))
    await lines.wait_for("ready")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ("stdout", "got INT") in lines.lines


@pytest.mark.timeout(30)
async def test_one_that_ignores_it_is_killed_after_the_grace(tmp_path):
    estate = local_estate(
        tmp_path,
        apply="trap '' TERM; echo $$ > shell; echo ready; while :; do sleep 0.05; done",
        stop_grace="1s",
    )
    lines = Lines()
    task = asyncio.get_running_loop().create_task(executor_of(estate).apply(job(), lines))
    await lines.wait_for("ready")
    pids = read_pids([tmp_path / "shell"])
    began = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - began >= 1.0  # the grace was given …
    assert await wait_gone(pids, deadline=5) == []  # … then SIGKILL
    assert any("SIGKILL sent" in line for _, line in lines.lines)


@pytest.mark.timeout(60)
async def test_a_second_abort_kills_at_once(tmp_path):
    estate = build_estate(
        tmp_path,
        channels=[channel("dev")],
        targets={"dev-1": {"channel": "dev", "executor": "shell"}},
        executors={
            "shell": {
                "kind": "local",
                "apply": "trap '' TERM; echo $$ > shell; echo ready; while :; do sleep 0.05; done",
                "stop_grace": "5m",
            }
        },
    )
    rollout = make_rollout(estate)
    events = Events(rollout)
    task = asyncio.get_running_loop().create_task(rollout.run())
    await events.first(lambda e: isinstance(e, ApplyOutput) and e.line == "ready", timeout=20)
    assert rollout.abort(reason="first").ok
    await events.first(lambda e: isinstance(e, ApplyOutput) and "SIGTERM sent" in e.line)
    second = rollout.abort(reason="again")
    assert second.ok and "at once" in second.message
    outcome = await asyncio.wait_for(task, 20)  # not the 5 minutes of grace
    assert outcome.outcome == "aborted"
    assert await wait_gone(read_pids([tmp_path / "shell"]), deadline=5) == []


@pytest.mark.timeout(120)
async def test_50_mb_of_output_keeps_memory_bounded_and_the_spool_holds_all_of_it(tmp_path):
    estate = build_estate(
        tmp_path,
        channels=[channel("dev")],
        targets={"dev-1": {"channel": "dev", "executor": "shell"}},
        executors={
            "shell": {"kind": "local", "apply": "yes 0123456789abcdefghij | head -c 50000000"}
        },
    )
    rollout = make_rollout(estate)
    events = Events(rollout)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    await rollout.run()
    grew_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    [finished] = events.of(ApplyFinished)
    assert finished.outcome == "ok", finished.reason
    [log] = (tmp_path / ".sluice" / "applies" / "1").glob("dev-1.*.log")
    assert log.stat().st_size == 50_000_000
    assert log.stat().st_mode & 0o777 == 0o600
    kept = sum(len(e.line) + 1 for e in events.of(ApplyOutput))
    assert kept < 600_000
    assert grew_kb < 100_000  # the process did not hold the 50 MB (or its events)


def test_claim_numbers_attempts_and_latest_finds_the_newest(tmp_path):
    spools = SpoolDir(tmp_path / "applies" / "7")
    first = spools.claim("eph/1", {"action": "apply"})
    second = SpoolDir(spools.path).claim("eph/1", {"action": "rollback"})  # another driver
    assert (first.attempt, second.attempt) == (1, 2)
    assert "/" not in first.base.name
    latest = spools.latest("eph/1")
    assert latest is not None and latest.info() == {"action": "rollback"}
    assert spools.latest("other") is None
    assert read_status(second) is None
    second.status.write_text("3\n")
    assert read_status(second) == 3


def test_claims_are_journal_lines_not_a_file_per_apply(tmp_path):
    spools = SpoolDir(tmp_path / "applies" / "7")
    for _ in range(3):
        spools.claim("t1", {"action": "apply"})
    spools.claim("t2", {"action": "rollback"})
    assert sorted(p.name for p in spools.path.iterdir()) == ["jobs.ndjson"]  # nothing else yet
    assert oct(spools.path.joinpath("jobs.ndjson").stat().st_mode & 0o777) == "0o600"
    with open(spools.path / "jobs.ndjson", "a") as journal:
        journal.write('{"spool": "t2.2", "act')  # a crash mid-write: that start was never recorded
    latest = SpoolDir(spools.path).latest("t2")
    assert latest is not None and (latest.attempt, latest.info()) == (1, {"action": "rollback"})
    assert SpoolDir(spools.path).claim("t1", {}).attempt == 4  # a resume numbers on


def test_spools_from_before_the_journal_are_read_too(tmp_path):
    directory = tmp_path / "applies" / "3"
    directory.mkdir(parents=True)
    (directory / "t1.2.job").write_text('{"action": "apply", "version": "2.0.0"}')
    (directory / "t1.1.job").write_text('{"action": "apply", "version": "1.0.0"}')
    spools = SpoolDir(directory)
    old = spools.latest("t1")
    assert old is not None and old.attempt == 2 and old.info()["version"] == "2.0.0"
    assert old.claimed
    assert spools.claim("t1", {"action": "rollback"}).attempt == 3
    newest = spools.latest("t1")
    assert newest is not None and newest.info() == {"action": "rollback"}


def test_long_lines_are_split_on_character_boundaries():
    got: list[tuple[str, str]] = []
    from collections import deque

    splitter = LineSplitter("stdout", lambda s, line: got.append((s, line)), deque(maxlen=3))
    text = "é" * 70000  # 140,000 bytes, no newline
    data = text.encode()
    for i in range(0, len(data), 4099):  # arbitrary chunk edges, mid-character too
        splitter.feed(data[i : i + 4099])
    splitter.close()
    assert "".join(line for _, line in got) == text
    assert all(len(line.encode()) <= 65536 for _, line in got)


@pytest.mark.timeout(60)
def test_the_stop_signal_reaches_the_apply_of_a_sluice_that_ignores_it(tmp_path):
    """A sluice started with SIGINT and SIGQUIT ignored (``sluice run … &`` in a script) does
    not pass that on: its applies can trap SIGINT, so the stop signal still reaches them."""
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parent
    program = (
        "import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
        "signal.signal(signal.SIGQUIT, signal.SIG_IGN); import pytest; "
        "sys.exit(pytest.main(sys.argv[1:]))"
    )
    test = f"{here / 'test_spool.py'}::test_stop_signal_is_what_the_group_gets"
    args = [
        sys.executable,
        "-c",
        program,
        "-q",
        "-p",
        "no:cacheprovider",
        "--rootdir",
        str(here.parent.parent),
        "--basetemp",
        str(tmp_path / "t"),
        test,
    ]
    result = subprocess.run(
        args, capture_output=True, text=True, timeout=50, cwd=here.parent.parent
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "1 passed" in result.stdout
