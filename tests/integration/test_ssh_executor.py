"""The ssh executor against a real OpenSSH sshd (see servers.py): applies, faults, abort, pooling.

Remote commands run as the sshd's login user and leave their traces (pid files, version files)
in a world-writable scratch directory outside pytest's 0700 tmp tree, which the test reads back.
Nothing waits on a fixed sleep: every wait polls a condition against a deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from orphan_applies import OrphanRuns, apply_command, estate_name
from servers import HOST, SshServer, free_port, generate_key

from sluice.engine.executors.base import ApplyResult, Job, create_executor
from sluice.engine.executors.ssh import SshExecutor
from sluice.engine.model.estate import Estate, parse_estate
from sluice.engine.support.clock import Clock
from sluice.engine.support.resources import Resources

SLUICE = str(Path(sys.executable).parent / "sluice")


# ------------------------------------------------------------------------------------ helpers


@pytest.fixture
def remote_dir() -> Iterator[Path]:
    """A scratch directory the remote login user can write and the test can read."""
    path = Path(tempfile.mkdtemp(prefix="sluice-ssh-remote-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def ssh_settings(server: SshServer, apply: str, **overrides: Any) -> dict[str, Any]:
    """An ``[executors.X]`` table reaching ``server`` as its user with its client key."""
    settings: dict[str, Any] = {
        "kind": "ssh",
        "host": server.host,
        "port": server.port,
        "user": server.user,
        "key": str(server.client_key_path),
        "known_hosts": str(server.known_hosts_path),
        "connect_timeout": "5s",
        "apply": apply,
    }
    settings.update(overrides)
    return settings


def estate_toml(
    executors: dict[str, dict[str, Any]],
    targets: dict[str, str],
    *,
    channel: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """An estate with one channel ``fleet``; ``targets`` maps target name → executor name."""
    data: dict[str, Any] = {
        "estate": {"name": "ssh-test", "history": "history.db"},
        "channels": [{"name": "fleet", "max_parallel": 8, **(channel or {})}],
        "targets": {
            name: {"channel": "fleet", "executor": executor, "vars": {"region": "eu-west-1"}}
            for name, executor in targets.items()
        },
        "executors": executors,
        "modules": {"app": {"versions": ["1.0.0", "2.0.0"], "initial": "1.0.0"}},
    }
    data.update(extra or {})
    return tomli_w.dumps(data)


def load(tmp_path: Path, text: str) -> Estate:
    path = tmp_path / "estate.toml"
    path.write_text(text)
    return parse_estate(text, path)


def executor_for(tmp_path: Path, settings: dict[str, Any], **clock: float) -> SshExecutor:
    estate = load(tmp_path, estate_toml({"box": settings}, {"t1": "box"}))
    executor = create_executor(estate.executors["box"], estate, Clock(**clock), Resources())
    assert isinstance(executor, SshExecutor)
    return executor


def job(target: str = "t1", *, version: str = "2.0.0", action: str = "apply", **kw: Any) -> Job:
    previous = kw.pop("previous_version", "1.0.0")
    return Job(
        target=target,
        channel="fleet",
        module="app",
        version=version,
        previous_version=previous,
        action=action,
        vars=kw.pop("vars", {"region": "eu-west-1"}),
    )


class Lines:
    """An OutputSink that keeps (stream, line) pairs."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __call__(self, stream: str, line: str) -> None:
        self.lines.append((stream, line))

    def of(self, stream: str) -> list[str]:
        return [line for s, line in self.lines if s == stream]


async def wait_until(
    condition: Callable[[], object],
    what: str,
    deadline: float = 10.0,
    detail: Callable[[], object] | None = None,
) -> None:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            seen = f"; last seen: {detail()}" if detail is not None else ""
            raise AssertionError(f"gave up after {deadline}s waiting for {what}{seen}")
        await asyncio.sleep(0.02)


def alive(pid: int) -> bool:
    """Whether pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def survivors(pids: list[int | None]) -> list[str]:
    """The pids still alive, each with its state and command line (for a failure message)."""
    found = []
    for pid in pids:
        if pid is not None and alive(pid):
            try:
                stat = Path(f"/proc/{pid}/stat").read_text().strip()
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            found.append(f"{stat} [{cmdline.decode(errors='replace').strip()}]")
    return found


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


async def apply_once(executor: SshExecutor, the_job: Job | None = None) -> ApplyResult:
    try:
        return await executor.apply(the_job or job(), Lines())
    finally:
        await executor.close()


# ------------------------------------------------------------------------------------ applies


@pytest.mark.timeout(60)
async def test_apply_streams_stdout_and_stderr_line_by_line(
    sshd: SshServer, tmp_path: Path
) -> None:
    command = 'echo start {target} {version} {vars.region}; echo warn >&2; printf "a\\nb\\n"'
    executor = executor_for(tmp_path, ssh_settings(sshd, command))
    assert executor.describe(job()).startswith(f"ssh {sshd.user}@{HOST}:{sshd.port}: echo ")
    sink = Lines()
    try:
        result = await executor.apply(job(), sink)
    finally:
        await executor.close()
    assert result == ApplyResult(True, "", 0)
    assert sink.of("stdout") == ["start t1 2.0.0 eu-west-1", "a", "b"]
    assert sink.of("stderr") == ["warn"]


@pytest.mark.timeout(60)
async def test_non_zero_exit_fails_with_the_output_tail(sshd: SshServer, tmp_path: Path) -> None:
    command = "for i in 1 2 3 4 5; do echo line$i; done; echo boom >&2; exit 3"
    result = await apply_once(executor_for(tmp_path, ssh_settings(sshd, command)))
    assert not result.ok and result.exit_code == 3
    assert result.reason.startswith("exit 3: ")
    assert "boom" in result.reason and "line5" in result.reason and "line1" not in result.reason
    assert "\n" not in result.reason


@pytest.mark.timeout(60)
async def test_secrets_travel_on_stdin_never_on_the_command_line(
    sshd: SshServer, tmp_path: Path, remote_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cr3t value with 'quotes' and $dollar"
    monkeypatch.setenv("SLUICE_TEST_TOKEN", secret)
    command = (
        f"printf '%s\\n' {{env.SLUICE_TEST_TOKEN}} > {remote_dir}/secret; "
        f'printf "%s\\n" "$REGION" "$TOKEN" > {remote_dir}/region; '
        f"tr '\\0' ' ' < /proc/$$/cmdline > {remote_dir}/cmdline"
    )
    settings = ssh_settings(
        sshd, command, env={"REGION": "{vars.region}", "TOKEN": "{env.SLUICE_TEST_TOKEN}"}
    )
    executor = executor_for(tmp_path, settings)
    assert secret not in executor.describe(job())
    result = await apply_once(executor)
    assert result.ok, result.reason
    assert (remote_dir / "secret").read_text() == secret + "\n"
    assert (remote_dir / "region").read_text() == f"eu-west-1\n{secret}\n"
    assert "SLUICE_TEST_TOKEN" in (remote_dir / "cmdline").read_text()
    assert secret not in (remote_dir / "cmdline").read_text()

    monkeypatch.setenv("SLUICE_TEST_TOKEN", "two\nlines")
    result = await apply_once(executor_for(tmp_path, settings))
    assert not result.ok and "newline" in result.reason and "two" not in result.reason


# ------------------------------------------------------------------------------------ host keys


@pytest.mark.timeout(60)
async def test_changed_host_key_is_refused_with_how_to_trust_it(
    sshd: SshServer, tmp_path: Path, remote_dir: Path
) -> None:
    wrong = sshd.wrong_known_hosts(tmp_path / "wrong_known_hosts")
    settings = ssh_settings(sshd, f"touch {remote_dir}/ran", known_hosts=str(wrong))
    result = await apply_once(executor_for(tmp_path, settings))
    assert not result.ok
    assert f"host key of {HOST}:{sshd.port} does NOT match {wrong}" in result.reason
    assert f"ssh-keygen -R '[{HOST}]:{sshd.port}' -f {wrong}" in result.reason
    assert f"ssh-keyscan -p {sshd.port} {HOST} >> {wrong}" in result.reason
    assert not (remote_dir / "ran").exists()


@pytest.mark.timeout(60)
async def test_unknown_host_key_is_refused_and_the_hint_works(
    sshd: SshServer, tmp_path: Path, remote_dir: Path
) -> None:
    empty = sshd.empty_known_hosts(tmp_path / "known_hosts")
    settings = ssh_settings(sshd, f"touch {remote_dir}/ran", known_hosts=str(empty))
    result = await apply_once(executor_for(tmp_path, settings))
    assert not result.ok
    assert f"host key of {HOST}:{sshd.port} is unknown (not in {empty})" in result.reason
    assert not (remote_dir / "ran").exists()
    # Following the message's own advice makes the next apply succeed.
    hint = result.reason.split("trust it with: ", 1)[1]
    assert hint == f"ssh-keyscan -p {sshd.port} {HOST} >> {empty}"
    subprocess.run(hint, shell=True, check=True, capture_output=True, timeout=30)
    result = await apply_once(executor_for(tmp_path, settings))
    assert result.ok, result.reason
    assert (remote_dir / "ran").exists()


@pytest.mark.timeout(60)
async def test_missing_known_hosts_file_is_refused(sshd: SshServer, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "known_hosts"
    settings = ssh_settings(sshd, "true", known_hosts=str(missing))
    result = await apply_once(executor_for(tmp_path, settings))
    assert not result.ok
    assert f"known_hosts file {missing} does not exist" in result.reason
    assert f"ssh-keyscan -p {sshd.port} {HOST} >> {missing}" in result.reason


# ------------------------------------------------------------------------------------ connect faults


@pytest.mark.timeout(60)
async def test_bad_keys_fail_the_target(sshd: SshServer, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger_key"
    generate_key(stranger, comment="not-authorized")
    result = await apply_once(executor_for(tmp_path, ssh_settings(sshd, "true", key=str(stranger))))
    assert not result.ok
    assert result.reason == (
        f"{sshd.user}@{HOST}:{sshd.port}: authentication refused (key {stranger} not accepted)"
    )

    missing = tmp_path / "no_such_key"
    result = await apply_once(executor_for(tmp_path, ssh_settings(sshd, "true", key=str(missing))))
    assert not result.ok and result.reason.startswith(f"cannot read key {missing}")

    garbage = tmp_path / "garbage_key"
    garbage.write_text("not a key\n")
    result = await apply_once(executor_for(tmp_path, ssh_settings(sshd, "true", key=str(garbage))))
    assert not result.ok and result.reason.startswith(f"cannot use key {garbage}")


@pytest.mark.timeout(60)
async def test_refused_port_fails_the_target(sshd: SshServer, tmp_path: Path) -> None:
    dead = free_port()
    result = await apply_once(executor_for(tmp_path, ssh_settings(sshd, "true", port=dead)))
    assert not result.ok
    assert result.reason.startswith(f"{HOST}:{dead}: connection refused")


@pytest.mark.timeout(60)
async def test_unresolvable_host_fails_the_target(sshd: SshServer, tmp_path: Path) -> None:
    settings = ssh_settings(sshd, "true", host="no-such-host.invalid")
    result = await apply_once(executor_for(tmp_path, settings))
    assert not result.ok and "no-such-host.invalid" in result.reason


@pytest.mark.timeout(60)
async def test_silent_server_hits_the_connect_timeout(sshd: SshServer, tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts TCP (in the backlog), never says SSH-2.0
        silent.bind((HOST, 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        settings = ssh_settings(sshd, "true", port=port, connect_timeout="500ms")
        result = await apply_once(executor_for(tmp_path, settings))
    assert not result.ok
    assert result.reason == f"{HOST}:{port}: no SSH handshake within 500ms (connect_timeout)"


# ------------------------------------------------------------------------------------ command faults


@pytest.mark.timeout(60)
async def test_command_beyond_timeout_is_killed(
    sshd: SshServer, tmp_path: Path, remote_dir: Path
) -> None:
    command = f"echo $$ > {remote_dir}/pid; sleep 60"
    result = await apply_once(executor_for(tmp_path, ssh_settings(sshd, command, timeout="1s")))
    assert not result.ok
    assert result.reason == f"timed out after 1s on {HOST}:{sshd.port}"
    pid = read_pid(remote_dir / "pid")
    assert pid is not None
    await wait_until(lambda: not alive(pid), f"remote shell {pid} to exit")


@pytest.mark.timeout(60)
async def test_connection_cut_mid_command_fails_then_reconnects(
    sshd: SshServer, tmp_path: Path
) -> None:
    # One session at a time: t1 runs (and is cut), t2 waits its turn on the same connection.
    command = "if [ {target} = t1 ]; then echo started; sleep 60; else echo again {target}; fi"
    executor = executor_for(tmp_path, ssh_settings(sshd, command, max_sessions=1))
    started = asyncio.Event()

    def sink(stream: str, line: str) -> None:
        if line == "started":
            started.set()

    try:
        first = asyncio.create_task(executor.apply(job("t1"), sink))
        queued_lines = Lines()
        queued = asyncio.create_task(executor.apply(job("t2"), queued_lines))
        await asyncio.wait_for(started.wait(), 20)
        assert await asyncio.to_thread(sshd.kill_session_children) == 1
        result = await asyncio.wait_for(first, 20)
        assert not result.ok
        assert result.reason.startswith(f"{HOST}:{sshd.port}: connection lost mid-command")
        assert "last output: started" in result.reason
        # t2 had not started: it goes on over a new connection instead of failing.
        result = await asyncio.wait_for(queued, 20)
        assert result.ok, result.reason
        assert queued_lines.of("stdout") == ["again t2"]
        # And later applies keep using that new connection.
        assert (await executor.apply(job("t3"), Lines())).ok
        assert sshd.connection_count() == 1
    finally:
        await executor.close()


@pytest.mark.timeout(60)
async def test_abort_terminates_remote_commands(
    sshd: SshServer, tmp_path: Path, remote_dir: Path
) -> None:
    # The shell records its pid and its child's; sleep runs in the background so both exist.
    command = f"sleep 300 & echo $! > {remote_dir}/{{target}}.child; echo $$ > {remote_dir}/{{target}}.pid; wait"
    executor = executor_for(tmp_path, ssh_settings(sshd, command))
    names = ["t1", "t2", "t3"]
    tasks = [asyncio.create_task(executor.apply(job(n), Lines())) for n in names]
    files = [remote_dir / f"{n}.{kind}" for n in names for kind in ("pid", "child")]
    try:
        await wait_until(lambda: all(read_pid(f) for f in files), "every command to start")
        pids = [read_pid(f) for f in files]
        assert all(pid is not None and alive(pid) for pid in pids)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with pytest.raises(asyncio.CancelledError):
                await task
        await wait_until(
            lambda: not survivors(pids),
            "no remote process to be left",
            detail=lambda: survivors(pids),
        )
        assert sshd.connection_count() == 1  # the connection itself lives until close()
    finally:
        await executor.close()
    assert await asyncio.to_thread(sshd.wait_for_connection_count, 0) == 0


@pytest.mark.timeout(60)
async def test_abort_while_the_session_opens_still_stops_the_command(
    sshd: SshServer, tmp_path: Path, remote_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # sshd runs the command before its reply to the exec request reaches the client; on a
    # loaded machine a cancel can land in between. Hold the reply back to make that moment.
    import asyncssh

    original = asyncssh.SSHClientConnection.create_process
    release = asyncio.Event()

    async def late_reply(self: Any, *args: Any, **kwargs: Any) -> Any:
        process = await original(self, *args, **kwargs)
        if "$SHELL" not in str(args[0] if args else ""):  # the connection's login-shell probe
            await release.wait()
        return process

    monkeypatch.setattr(asyncssh.SSHClientConnection, "create_process", late_reply)
    command = f"sleep 300 & echo $! > {remote_dir}/{{target}}.child; echo $$ > {remote_dir}/{{target}}.pid; wait"
    executor = executor_for(tmp_path, ssh_settings(sshd, command))
    task = asyncio.create_task(executor.apply(job("t1"), Lines()))
    files = [remote_dir / f"t1.{kind}" for kind in ("pid", "child")]
    try:
        await wait_until(lambda: all(read_pid(f) for f in files), "the command to start")
        pids = [read_pid(f) for f in files]
        assert not task.done()  # still waiting for the session: the cancel lands there
        task.cancel()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_until(
            lambda: not survivors(pids),
            "no remote process to be left",
            detail=lambda: survivors(pids),
        )
    finally:
        await executor.close()


# ------------------------------------------------------------------------------------ pooling


@pytest.mark.timeout(90)
async def test_one_connection_per_host_with_bounded_sessions(
    sshd: SshServer, tmp_path: Path, remote_dir: Path
) -> None:
    go = remote_dir / "go"
    command = (
        f"touch {remote_dir}/{{target}}.started; "
        f"while [ ! -e {go} ]; do sleep 0.02; done; echo {{version}} > {remote_dir}/{{target}}.version"
    )
    executor = executor_for(tmp_path, ssh_settings(sshd, command, max_sessions=4))
    names = [f"t{i}" for i in range(20)]

    def started() -> int:
        return len(list(remote_dir.glob("*.started")))

    try:
        tasks = [asyncio.create_task(executor.apply(job(n), Lines())) for n in names]
        await wait_until(lambda: started() >= 4, "four sessions to start")
        # 20 applies want to run; for a while, observe that only max_sessions do, on one connection.
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            assert started() == 4
            assert sshd.connection_count() == 1
            await asyncio.sleep(0.05)
        go.touch()
        results = await asyncio.wait_for(asyncio.gather(*tasks), 60)
        assert all(r.ok for r in results), [r.reason for r in results if not r.ok]
        assert {(remote_dir / f"{n}.version").read_text() for n in names} == {"2.0.0\n"}
        assert sshd.connection_count() == 1
    finally:
        await executor.close()
    assert await asyncio.to_thread(sshd.wait_for_connection_count, 0) == 0


@pytest.mark.timeout(60)
async def test_max_sessions_above_the_server_limit_says_so(
    sshd_factory: Callable[..., SshServer], tmp_path: Path, remote_dir: Path
) -> None:
    server = sshd_factory(max_sessions=2)
    go = remote_dir / "go"
    command = f"while [ ! -e {go} ]; do sleep 0.02; done"
    executor = executor_for(tmp_path, ssh_settings(server, command, max_sessions=3))
    try:
        tasks = [asyncio.create_task(executor.apply(job(f"t{i}"), Lines())) for i in range(3)]
        done, _ = await asyncio.wait(tasks, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        go.touch()
        results = await asyncio.wait_for(asyncio.gather(*tasks), 30)
    finally:
        await executor.close()
    refused = [r for r in results if not r.ok]
    assert len(done) == 1 and len(refused) == 1
    assert "sshd refused a session" in refused[0].reason
    assert "max_sessions (3) above the server's MaxSessions" in refused[0].reason


@pytest.mark.timeout(60)
async def test_jump_host_tunnels_through_a_second_sshd(
    sshd: SshServer, sshd_jump: SshServer, tmp_path: Path, remote_dir: Path
) -> None:
    # Like a real bastion, the jump host accepts the same key as the target (one `key` setting).
    authorized = sshd_jump.tmpdir / "auth" / "authorized_keys"
    original = authorized.read_text()
    public_key = sshd.client_key_path.with_name(sshd.client_key_path.name + ".pub").read_text()
    authorized.write_text(original + public_key)
    try:
        await _jump_host_checks(sshd, sshd_jump, tmp_path, remote_dir)
    finally:
        authorized.write_text(original)


async def _jump_host_checks(
    sshd: SshServer, sshd_jump: SshServer, tmp_path: Path, remote_dir: Path
) -> None:
    both = tmp_path / "known_hosts"
    both.write_text(sshd.known_hosts_path.read_text() + sshd_jump.known_hosts_path.read_text())
    jump = f"{sshd_jump.user}@{HOST}:{sshd_jump.port}"
    settings = ssh_settings(
        sshd, f"echo {{target}} > {remote_dir}/{{target}}.via", jump=jump, known_hosts=str(both)
    )
    executor = executor_for(tmp_path, settings)
    assert f" via {jump}: " in executor.describe(job())
    try:
        results = await asyncio.gather(*(executor.apply(job(f"t{i}"), Lines()) for i in range(5)))
        assert all(r.ok for r in results), [r.reason for r in results]
        assert sshd_jump.connection_count() == 1 and sshd.connection_count() == 1
    finally:
        await executor.close()
    assert (remote_dir / "t4.via").read_text() == "t4\n"

    # The jump host's key is verified too, and the message says which host failed.
    only_target = tmp_path / "only_target"
    only_target.write_text(sshd.known_hosts_path.read_text())
    result = await apply_once(executor_for(tmp_path, {**settings, "known_hosts": str(only_target)}))
    assert not result.ok
    assert result.reason.startswith(f"jump host: host key of {HOST}:{sshd_jump.port} is unknown")
    # An unknown target behind the jump host gets a hint that goes through the jump host.
    only_jump = tmp_path / "only_jump"
    only_jump.write_text(sshd_jump.known_hosts_path.read_text())
    result = await apply_once(executor_for(tmp_path, {**settings, "known_hosts": str(only_jump)}))
    assert not result.ok
    assert result.reason.startswith(f"host key of {HOST}:{sshd.port} is unknown")
    assert f"-J {jump} -p {sshd.port}" in result.reason
    # A target the jump host cannot reach fails with the jump host's own words.
    dead = free_port()
    result = await apply_once(executor_for(tmp_path, {**settings, "port": dead}))
    assert not result.ok
    assert result.reason.startswith(f"{HOST}:{dead}: the jump host {jump} cannot reach it (")


# ------------------------------------------------------------------------------------ rollback


@pytest.mark.timeout(60)
async def test_rollback_reapplies_the_previous_version(
    sshd: SshServer, tmp_path: Path, remote_dir: Path
) -> None:
    version_file = remote_dir / "t1.version"
    apply = f"echo {{version}} > {remote_dir}/{{target}}.version"
    executor = executor_for(tmp_path, ssh_settings(sshd, apply))
    try:
        assert (await executor.apply(job(), Lines())).ok
        assert version_file.read_text() == "2.0.0\n"
        back = job(version="1.0.0", previous_version="2.0.0", action="rollback")
        assert (await executor.apply(back, Lines())).ok  # no rollback template: apply at 1.0.0
        assert version_file.read_text() == "1.0.0\n"
    finally:
        await executor.close()

    rollback = f"echo rolled back from {{previous_version}} to {{version}} > {remote_dir}/{{target}}.version"
    executor = executor_for(tmp_path, ssh_settings(sshd, apply, rollback=rollback))
    back = job(version="1.0.0", previous_version="2.0.0", action="rollback")
    assert "echo rolled back from 2.0.0 to 1.0.0 > " in executor.describe(back)
    result = await apply_once(executor, back)
    assert result.ok, result.reason
    assert version_file.read_text() == "rolled back from 2.0.0 to 1.0.0\n"


def run_headless(
    estate: Path, *args: str, timeout: float = 120
) -> tuple[int, list[dict[str, Any]]]:
    """``sluice run ESTATE app@2.0.0 --headless --json --time-scale 0``: exit code and events."""
    proc = subprocess.run(
        [SLUICE, "run", str(estate), "app@2.0.0", "--headless", "--json", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert events, f"no events; stderr:\n{proc.stderr}"
    return proc.returncode, events


@pytest.mark.timeout(120)
def test_rollout_rolls_a_failed_wave_back_over_ssh(
    sshd: SshServer, tmp_path: Path, remote_dir: Path
) -> None:
    apply = f"echo {{version}} > {remote_dir}/{{target}}.version"
    names = [f"node-{i}" for i in range(4)]
    text = estate_toml(
        {"box": ssh_settings(sshd, apply)},
        dict.fromkeys(names, "box"),
        channel={"soak": "10s", "checks": ["latency"], "on_failure": "rollback"},
        extra={
            "checks": {
                "latency": {"source": "simulated", "metric": "p99", "base": 0.1, "max": 0.25}
            },
            "simulation": {
                "seed": 3,
                "regressions": [
                    {"module": "app", "version": "2.0.0", "metric": "p99", "factor": 5.0}
                ],
            },
        },
    )
    estate = tmp_path / "estate.toml"
    estate.write_text(text)
    code, events = run_headless(estate, "--time-scale", "0")
    finished = [e for e in events if e["kind"] == "apply_finished"]
    applies = {e["target"]: e for e in finished if e["action"] == "apply"}
    rollbacks = {e["target"]: e for e in finished if e["action"] == "rollback"}
    assert all(applies[n]["outcome"] == "ok" for n in names), applies
    assert all(rollbacks[n]["outcome"] == "ok" for n in names), rollbacks
    assert all(rollbacks[n]["version"] == "1.0.0" for n in names)
    assert {(remote_dir / f"{n}.version").read_text() for n in names} == {"1.0.0\n"}
    assert code == 1  # halted after the rollback


# ------------------------------------------------------------------------------------ a wave


@pytest.mark.timeout(180)
def test_fifty_target_wave_with_five_dead_ports_fails_exactly_those(
    sshd: SshServer, tmp_path: Path, remote_dir: Path
) -> None:
    """Driven through ``sluice run --headless --json``: the whole path, rollout and history."""
    apply = f"echo {{version}} > {remote_dir}/{{target}}.version"
    dead_port = free_port()
    live = [f"host-{i:02d}" for i in range(45)]
    dead = [f"dead-{i}" for i in range(5)]
    text = estate_toml(
        {
            "fleet": ssh_settings(sshd, apply),
            "gone": ssh_settings(sshd, apply, port=dead_port),
        },
        {**dict.fromkeys(live, "fleet"), **dict.fromkeys(dead, "gone")},
        channel={"max_parallel": 20, "max_failures": 5},
    )
    estate = tmp_path / "estate.toml"
    estate.write_text(text)
    code, events = run_headless(estate, "--time-scale", "0")
    finished = {e["target"]: e for e in events if e["kind"] == "apply_finished"}
    assert len(finished) == 50
    failed = {name for name, e in finished.items() if e["outcome"] != "ok"}
    assert failed == set(dead)
    assert all("connection refused" in finished[n]["reason"] for n in dead)
    assert {(remote_dir / f"{n}.version").read_text() for n in live} == {"2.0.0\n"}
    assert not any((remote_dir / f"{n}.version").exists() for n in dead)
    assert code == 0, events[-1]
    assert sshd.wait_for_connection_count(0) == 0  # the rollout closed its connection
    assert os.path.exists(tmp_path / "history.db")


@pytest.mark.timeout(120)
def test_aborting_sluice_run_leaves_no_remote_process(
    sshd: SshServer, tmp_path: Path, remote_dir: Path
) -> None:
    """SIGTERM to ``sluice run --headless`` aborts (exit 3) and the remote commands die too."""
    command = (
        f"sleep 300 & echo $! > {remote_dir}/{{target}}.child; "
        f"echo $$ > {remote_dir}/{{target}}.pid; wait"
    )
    names = [f"node-{i}" for i in range(4)]
    estate = tmp_path / "estate.toml"
    estate.write_text(
        estate_toml({"box": ssh_settings(sshd, command)}, dict.fromkeys(names, "box"))
    )
    files = [remote_dir / f"{n}.{kind}" for n in names for kind in ("pid", "child")]
    proc = subprocess.Popen(
        [SLUICE, "run", str(estate), "app@2.0.0", "--headless", "--json"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        end = time.monotonic() + 30
        while not all(read_pid(f) for f in files):
            assert proc.poll() is None and time.monotonic() < end, "commands did not start"
            time.sleep(0.02)
        pids = [read_pid(f) for f in files]
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 3, stderr
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    outcomes = {e["target"]: e["outcome"] for e in events if e["kind"] == "apply_finished"}
    assert outcomes == dict.fromkeys(names, "aborted")
    end = time.monotonic() + 10
    while any(pid is not None and alive(pid) for pid in pids):
        assert time.monotonic() < end, "a remote process outlived the abort"
        time.sleep(0.02)
    assert sshd.wait_for_connection_count(0) == 0


@pytest.mark.timeout(180)
def test_resume_waits_for_a_remote_apply_the_killed_driver_left_running(
    sshd: SshServer, tmp_path: Path, remote_dir: Path
) -> None:
    """kill -9 sluice: sshd drops its sessions but the commands go on; with their remote spools
    gone (nothing to adopt — test_ssh_spool.py has the adopting cases), resume must not overlap."""
    estate = tmp_path / "estate.toml"
    own = {"estate": {"name": estate_name(), "history": "history.db"}}
    spools = remote_dir / "spools"
    settings = ssh_settings(sshd, apply_command(remote_dir), spool_dir=str(spools))
    estate.write_text(estate_toml({"box": settings}, {"a": "box", "b": "box"}, extra=own))

    def sluice(command: str, *args: str) -> subprocess.Popen[str]:
        argv = [SLUICE, command, str(estate), *args, "--headless", "--json", "--time-scale", "0"]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)

    OrphanRuns(remote_dir).kill_mid_apply_then_resume(
        sluice("run", "app@2.0.0"),
        lambda: (shutil.rmtree(spools), sluice("resume"))[1],
        alive=alive,
    )
