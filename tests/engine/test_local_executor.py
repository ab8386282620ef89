"""The local executor: shell quoting, process groups, timeouts, output streaming, secrets."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time

import pytest
from rollout_helpers import (
    Events,
    build_estate,
    channel,
    kill_leftovers,
    make_rollout,
    read_pids,
    wait_gone,
)

from sluice.engine.executors import local
from sluice.engine.executors.base import Job, create_executor
from sluice.engine.model.template import MASK
from sluice.engine.rollout.events import ApplyFinished, ApplyOutput, ApplyStarted
from sluice.engine.support.clock import Clock
from sluice.engine.support.resources import Resources

SECRET = "s3cr3t-value-42"


def local_estate(tmp_path, *, names=("dev-1",), vars=None, **executor):
    return build_estate(
        tmp_path,
        channels=[channel("dev")],
        targets={
            name: {"channel": "dev", "executor": "shell", **({"vars": vars} if vars else {})}
            for name in names
        },
        executors={"shell": {"kind": "local", **executor}},
    )


def executor_of(estate):
    return create_executor(estate.executors["shell"], estate, Clock(0), Resources())


def job(target="dev-1", **overrides):
    values = {
        "target": target,
        "channel": "dev",
        "module": "op",
        "version": "2.0",
        "previous_version": "1.0",
        "action": "apply",
        **overrides,
    }
    return Job(**values)


class Lines:
    def __init__(self):
        self.lines: list[tuple[str, str]] = []
        self.changed = asyncio.Event()

    def __call__(self, stream, line):
        self.lines.append((stream, line))
        self.changed.set()

    async def wait_for(self, text, timeout=10.0):
        async with asyncio.timeout(timeout):
            while not any(line == text for _, line in self.lines):
                self.changed.clear()
                await self.changed.wait()


@pytest.mark.timeout(30)
async def test_a_hostile_target_name_reaches_the_command_as_data(tmp_path):
    hostile = "x; touch PWNED"
    estate = local_estate(
        tmp_path,
        names=(hostile,),
        vars={"note": "$(touch PWNED2) `touch PWNED3` ' \" \\"},
        apply="echo {target}; echo {vars.note}",
    )
    rollout = make_rollout(estate)
    events = Events(rollout)
    outcome = await rollout.run()

    assert outcome.outcome == "done"
    lines = [e.line for e in events.of(ApplyOutput)]
    assert lines == [hostile, "$(touch PWNED2) `touch PWNED3` ' \" \\"]
    assert list(tmp_path.glob("PWNED*")) == []
    started = events.of(ApplyStarted)[0]
    assert started.command.startswith("echo 'x; touch PWNED'; echo ")


@pytest.mark.timeout(30)
async def test_timeout_fails_the_apply_and_kills_the_process_group(tmp_path):
    estate = local_estate(
        tmp_path,
        apply="sleep 30 & echo $! > child; echo $$ > shell; echo started; wait",
        timeout="1s",
    )
    executor = executor_of(estate)
    lines = Lines()
    began = time.monotonic()
    result = await executor.apply(job(), lines)
    took = time.monotonic() - began

    pids = read_pids([tmp_path / "shell", tmp_path / "child"])
    try:
        assert not result.ok
        assert result.reason == "timed out after 1s"
        assert 1.0 <= took < local.GRACE_SECONDS + 2  # SIGTERM was enough: no grace wait
        assert ("stdout", "started") in lines.lines
        assert await wait_gone(pids, deadline=5) == []
    finally:
        kill_leftovers(pids)


@pytest.mark.timeout(30)
async def test_cancel_escalates_to_sigkill_for_a_group_that_ignores_sigterm(tmp_path):
    estate = local_estate(
        tmp_path,
        apply="trap '' TERM; sleep 30 & echo $! > child; echo $$ > shell; echo ready; wait",
        stop_grace="0.5s",
    )
    executor = executor_of(estate)
    lines = Lines()
    task = asyncio.get_running_loop().create_task(executor.apply(job(), lines))
    await lines.wait_for("ready")
    pids = read_pids([tmp_path / "shell", tmp_path / "child"])
    try:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # cancel returns only once the group is gone (SIGTERM ignored, SIGKILL after the grace)
        assert await wait_gone(pids, deadline=5) == []
    finally:
        kill_leftovers(pids)


@pytest.mark.timeout(30)
async def test_non_zero_exit_fails_with_the_last_output_lines(tmp_path):
    estate = local_estate(
        tmp_path, apply="echo planning; echo one; echo two; echo; echo three; exit 3"
    )
    lines = Lines()
    result = await executor_of(estate).apply(job(), lines)
    assert not result.ok
    assert result.exit_code == 3
    assert result.reason == "exit 3: one | two | three"  # the last non-blank lines
    assert lines.lines == [("stdout", t) for t in ("planning", "one", "two", "", "three")]


@pytest.mark.timeout(30)
async def test_stderr_is_streamed_as_stderr(tmp_path):
    estate = local_estate(tmp_path, apply="echo oops >&2; kill -TERM $$")
    lines = Lines()
    result = await executor_of(estate).apply(job(), lines)
    assert lines.lines == [("stderr", "oops")]
    assert not result.ok and result.reason == "killed by signal 15: oops"


@pytest.mark.timeout(30)
async def test_output_is_streamed_line_by_line_as_it_comes(tmp_path):
    estate = local_estate(tmp_path, apply="echo first; read _ < gate; echo second")
    gate = tmp_path / "gate"
    import os

    os.mkfifo(gate)
    lines = Lines()
    task = asyncio.get_running_loop().create_task(executor_of(estate).apply(job(), lines))
    await lines.wait_for("first")  # seen while the command still runs
    assert not task.done()
    fd = os.open(gate, os.O_WRONLY)
    os.write(fd, b"go\n")
    os.close(fd)
    result = await asyncio.wait_for(task, 10)
    assert result.ok
    assert [line for _, line in lines.lines] == ["first", "second"]


@pytest.mark.timeout(30)
async def test_rollback_uses_its_template_with_the_previous_version(tmp_path):
    estate = local_estate(
        tmp_path,
        apply="echo apply {version}",
        rollback="echo rollback to {version} from {previous_version} on {channel} of {module}",
    )
    lines = Lines()
    executor = executor_of(estate)
    assert (
        await executor.apply(job(action="rollback", version="1.0", previous_version="2.0"), lines)
    ).ok
    assert lines.lines == [("stdout", "rollback to 1.0 from 2.0 on dev of op")]


@pytest.mark.timeout(30)
async def test_a_missing_workdir_or_env_var_fails_the_target_with_a_reason(tmp_path, monkeypatch):
    monkeypatch.delenv("SLUICE_UNSET_VAR", raising=False)
    estate = local_estate(tmp_path, apply="echo {env.SLUICE_UNSET_VAR}")
    result = await executor_of(estate).apply(job(), Lines())
    assert not result.ok and "SLUICE_UNSET_VAR is not set" in result.reason

    estate = local_estate(tmp_path, apply="true", workdir="no/such/dir")
    result = await executor_of(estate).apply(job(), Lines())
    assert not result.ok and "cannot start /bin/sh" in result.reason


@pytest.mark.timeout(30)
async def test_env_secret_reaches_the_process_but_never_an_event(tmp_path, monkeypatch):
    monkeypatch.setenv("SLUICE_TEST_TOKEN", SECRET)
    estate = local_estate(
        tmp_path,
        names=("dev-1", "dev-2"),
        apply=(
            'test "$API_TOKEN" = {env.SLUICE_TEST_TOKEN} && echo env-ok; '
            "echo token={env.SLUICE_TEST_TOKEN}; echo leaked $API_TOKEN >&2; "
            'test {target} = dev-1 || { echo "denied for $API_TOKEN"; exit 7; }'
        ),
        env={"API_TOKEN": "{env.SLUICE_TEST_TOKEN}"},
    )
    rollout = make_rollout(estate, clock=Clock(1))
    events = Events(rollout)
    outcome = await rollout.run()
    assert outcome.outcome == "halted"  # dev-2 exits 7 on purpose

    lines = [e.line for e in events.of(ApplyOutput, target="dev-1")]
    assert lines == ["env-ok", f"token={MASK}", f"leaked {MASK}"]
    started = events.of(ApplyStarted)[0]
    assert started.command.startswith('test "$API_TOKEN" = "${SLUICE_TEST_TOKEN}"')
    failed = events.of(ApplyFinished, target="dev-2")[0]
    assert failed.outcome == "failed" and f"denied for {MASK}" in failed.reason
    assert rollout.targets["dev-2"].reason == failed.reason
    for event in events.all:
        assert SECRET not in json.dumps(event.to_dict(), default=str), event
    assert SECRET not in outcome.summary


@pytest.mark.timeout(30)
def test_applies_left_running_are_found_by_their_marker() -> None:
    from sluice.engine.executors.orphans import MARKER, find_running, still_running

    def spawn(value: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["sleep", "30"], env={**os.environ, MARKER: value})

    est = f"est-{time.time_ns()}"  # no other process carries it
    mine, other = spawn(f"{est}/t1"), spawn(f"{est}x/t1")
    try:
        found = find_running(est)
        assert found == {"t1": [mine.pid]}
        assert still_running([mine.pid], est, "t1") == [mine.pid]
        assert still_running([mine.pid], est, "t2") == []  # a marker of another target
    finally:
        mine.kill()
        other.kill()
        mine.wait()
        other.wait()
    assert still_running([mine.pid], est, "t1") == []
    assert find_running(est) == {}


@pytest.mark.timeout(30)
async def test_an_apply_whose_driver_lost_the_lease_is_never_started(tmp_path):
    """The executor asks ``Job.may_launch`` right before it starts the command: a driver that
    lost the lease meanwhile raises out of the apply, and the command never runs."""
    from sluice.engine.rollout.state import StopDriving

    marker = tmp_path / "ran"
    estate = local_estate(tmp_path, apply=f"touch {marker}")
    executor = executor_of(estate)

    def lost() -> None:
        raise StopDriving("this process lost the lease")

    try:
        with pytest.raises(StopDriving):
            await executor.apply(job(may_launch=lost), lambda stream, line: None)
        assert not marker.exists()
        result = await executor.apply(job(may_launch=lambda: None), lambda stream, line: None)
        assert result.ok and marker.exists()  # the same apply, still allowed: it runs
    finally:
        await executor.close()
