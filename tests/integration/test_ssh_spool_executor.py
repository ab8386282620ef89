"""The ssh executor's spooled applies, driven directly against the real sshd: both streams kept
apart through the one streaming ``tail``, the spool files and status on the host, and a stop
(abort) with ``stop_grace`` — a command that traps SIGTERM finishes its cleanup (streamed), one
that ignores it is killed after the grace, and a second abort kills at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
from pathlib import Path

import pytest
from servers import SshServer
from test_ssh_executor import Lines, executor_for, job, remote_dir, ssh_settings, wait_until

from sluice.engine.executors.base import Job
from sluice.engine.executors.ssh import SshExecutor
from sluice.engine.executors.ssh_spool import remote_base

__all__ = ["remote_dir"]  # the fixture, re-used


def spooled_job(tmp_path: Path, target: str = "t1") -> Job:
    local = tmp_path / "applies" / "1"
    local.mkdir(parents=True, exist_ok=True)
    return dataclasses.replace(job(target), spool=local / f"{target}.1")


def executor(
    sshd: SshServer, tmp_path: Path, remote: Path, command: str, **kw: object
) -> SshExecutor:
    settings = ssh_settings(sshd, command, spool_dir=str(remote / "spools"), **kw)
    return executor_for(tmp_path, settings)


def remote_files(ex: SshExecutor, the_job: Job) -> Path:
    assert the_job.spool is not None
    return Path(remote_base(ex.spool_dir, ex.estate_name, the_job.spool))


def read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


@pytest.mark.timeout(60)
async def test_a_spooled_apply_streams_stdout_and_stderr_apart_line_by_line(
    sshd: SshServer, tmp_path: Path, remote_dir: Path
) -> None:
    # Blank lines, a line like tail's header, an unfinished last line: all kept as printed.
    command = (
        "echo one; echo oops >&2; echo; echo '==> not a header <=='; echo two; "
        "echo >&2; echo again >&2; sleep 0.2; echo three; printf 'no newline'; exit 4"
    )
    ex = executor(sshd, tmp_path, remote_dir, command)
    the_job = spooled_job(tmp_path)
    lines = Lines()
    try:
        result = await ex.apply(the_job, lines)
    finally:
        await ex.close()
    assert not result.ok and result.exit_code == 4, result
    assert lines.of("stdout") == ["one", "", "==> not a header <==", "two", "three", "no newline"]
    assert lines.of("stderr") == ["oops", "", "again"]
    base = remote_files(ex, the_job)
    assert read(Path(f"{base}.log")) == "one\n\n==> not a header <==\ntwo\nthree\nno newline"
    assert read(Path(f"{base}.err")) == "oops\n\nagain\n"
    assert read(Path(f"{base}.status")) == "4\n"
    assert oct(Path(f"{base}.log").stat().st_mode & 0o777) == "0o600"
    # The local copy, for `sluice show --output`.
    assert the_job.spool is not None
    local = the_job.spool.with_name("t1.1.log").read_text()
    assert local == "one\n\n==> not a header <==\ntwo\nthree\nno newline\n"


@pytest.mark.timeout(90)
async def test_an_abort_lets_a_command_that_traps_sigterm_finish_its_cleanup(
    sshd: SshServer, tmp_path: Path, remote_dir: Path
) -> None:
    command = (
        f"trap 'echo cleaning; sleep 2; echo cleaned; touch {remote_dir}/cleaned; exit 3' TERM; "
        "echo ready; while :; do sleep 0.05; done"
    )
    ex = executor(sshd, tmp_path, remote_dir, command, stop_grace="60s")
    the_job = spooled_job(tmp_path)
    lines = Lines()
    task = asyncio.create_task(ex.apply(the_job, lines))
    try:
        await wait_until(lambda: "ready" in lines.of("stdout"), "the command to start")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await settle(task, lines)
    finally:
        await ex.close()
    assert (remote_dir / "cleaned").exists()
    assert lines.of("stdout")[-2:] == ["cleaning", "cleaned"]  # streamed while it stopped
    assert any("SIGTERM sent" in line for line in lines.of("stderr"))
    assert read(Path(f"{remote_files(ex, the_job)}.status")) == "3\n"


@pytest.mark.timeout(90)
async def test_a_command_that_ignores_the_stop_signal_is_killed_after_the_grace(
    sshd: SshServer, tmp_path: Path, remote_dir: Path
) -> None:
    command = "trap '' TERM; echo ready; while :; do sleep 0.05; done"
    ex = executor(sshd, tmp_path, remote_dir, command, stop_grace="1s")
    the_job = spooled_job(tmp_path)
    lines = Lines()
    task = asyncio.create_task(ex.apply(the_job, lines))
    try:
        await wait_until(lambda: "ready" in lines.of("stdout"), "the command to start")
        pgid = int(read(Path(f"{remote_files(ex, the_job)}.pid")).split()[0])  # the wrapper
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await settle(task, lines)
    finally:
        await ex.close()
    assert any("grace: SIGKILL" in line for line in lines.of("stderr")), lines.lines
    assert read(Path(f"{remote_files(ex, the_job)}.status")) == "137\n"
    await wait_until(lambda: not group_alive(pgid), "the apply's process group to be gone")


@pytest.mark.timeout(90)
async def test_a_second_abort_while_stopping_kills_at_once(
    sshd: SshServer, tmp_path: Path, remote_dir: Path
) -> None:
    command = "trap 'echo stopping; while :; do sleep 0.05; done' TERM; echo ready; while :; do sleep 0.05; done"
    ex = executor(sshd, tmp_path, remote_dir, command, stop_grace="10m")
    the_job = spooled_job(tmp_path)
    lines = Lines()
    task = asyncio.create_task(ex.apply(the_job, lines))
    try:
        await wait_until(lambda: "ready" in lines.of("stdout"), "the command to start")
        task.cancel()
        await wait_until(lambda: "stopping" in lines.of("stdout"), "the stop signal to arrive")
        assert not task.done()  # waiting out the 10-minute grace
        task.cancel()  # the second abort
        with pytest.raises(asyncio.CancelledError):
            await settle(task, lines)
    finally:
        await ex.close()
    assert read(Path(f"{remote_files(ex, the_job)}.status")) == "137\n"


async def settle(task: asyncio.Task[object], lines: Lines, deadline: float = 30.0) -> object:
    """``await task``, or fail naming where it is stuck (and what it printed)."""
    try:
        return await asyncio.wait_for(asyncio.shield(task), deadline)
    except TimeoutError:
        where = io.StringIO()
        task.print_stack(file=where)
        raise AssertionError(
            f"still running after {deadline}s:\n{where.getvalue()}{lines.lines}"
        ) from None


def group_alive(pgid: int) -> bool:
    """Whether any live (not zombie) process is in process group ``pgid``."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


@pytest.mark.timeout(60)
async def test_the_first_applies_do_not_wait_for_the_login_shell_probe(
    sshd: SshServer, tmp_path: Path, remote_dir: Path
) -> None:
    """A new connection's login shell is asked about in the background: an apply launched
    before the answer runs in an ``sh`` of its own (``$0`` is sluice's), right on any host;
    once the probe has said the shell is POSIX (the test user's is /bin/sh), it runs the
    spooling script itself (``$0`` is the login shell's)."""
    ex = executor(sshd, tmp_path, remote_dir, 'echo "$0"')
    seen: list[str] = []
    try:
        deadline = asyncio.get_running_loop().time() + 20
        for number in range(1, 1000):
            the_job = spooled_job(tmp_path, f"t{number}")
            lines = Lines()
            result = await ex.apply(the_job, lines)
            assert result.ok, result
            seen.append(lines.of("stdout")[-1])
            if seen[-1] != "sluice" or asyncio.get_running_loop().time() > deadline:
                break
    finally:
        await ex.close()
    assert seen[0] == "sluice", seen  # launched at once, before the probe's answer
    assert seen[-1] == "sh", seen  # the POSIX form, once the probe answered
