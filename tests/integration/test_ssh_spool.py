"""Remote applies that outlive their driver (issue 11), against the real sshd: kill -9 `sluice
run` while a remote apply prints, then resume; and a connection cut server-side mid-apply.

Each target's apply logs ``start TARGET PID`` to runs.log on the host, prints a line every 20 ms
until its ``release-TARGET`` file exists, then logs ``end`` and touches ``done-TARGET``.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import SshServer, _kill, descendant_pids
from test_ssh_executor import estate_toml, ssh_settings

SLUICE = str(Path(sys.executable).with_name("sluice"))
TARGETS = ("a", "b")


@pytest.fixture
def remote_dir() -> Iterator[Path]:
    """A scratch directory the remote login user can write and the test can read."""
    path = Path(tempfile.mkdtemp(prefix="sluice-ssh-spool-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def apply_command(directory: Path) -> str:
    return (
        f"echo start {{target}} $$ >> {directory}/runs.log; i=0; "
        f"while [ ! -e {directory}/release-{{target}} ]; do i=$((i+1)); echo tick $i; sleep 0.02; done; "
        f"echo end {{target}} $$ >> {directory}/runs.log; echo last words; touch {directory}/done-{{target}}"
    )


def write_estate(sshd: SshServer, tmp_path: Path, remote: Path) -> Path:
    estate = tmp_path / "estate.toml"
    settings = ssh_settings(sshd, apply_command(remote), spool_dir=str(remote / "spools"))
    own = {"estate": {"name": f"ssh-spool-{time.time_ns()}", "history": "history.db"}}
    estate.write_text(estate_toml({"box": settings}, dict.fromkeys(TARGETS, "box"), extra=own))
    return estate


def sluice(estate: Path, command: str, *args: str) -> subprocess.Popen[str]:
    argv = [SLUICE, command, str(estate), *args, "--headless", "--json", "--time-scale", "0"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def runs(remote: Path) -> list[str]:
    log = remote / "runs.log"
    return [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []


def ticks(remote: Path) -> int:
    return sum(p.read_text().count("tick") for p in (remote / "spools").rglob("*.log"))


def wait_until(condition, what: str, proc: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert proc is None or proc.poll() is None, f"sluice ended before {what}"
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def sshd_sessions(sshd: SshServer) -> list[int]:
    """The listener's descendants that are sshd processes (monitor and session, not commands)."""
    found = []
    for pid in descendant_pids(sshd.pid):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "sshd":
                found.append(pid)
        except OSError:
            continue
    return found


def release(remote: Path) -> None:
    for target in TARGETS:
        (remote / f"release-{target}").touch()


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


@pytest.mark.timeout(180)
def test_kill_9_mid_remote_apply_then_resume_records_it_without_running_it_again(
    sshd: SshServer, tmp_path: Path, remote_dir: Path
) -> None:
    estate = write_estate(sshd, tmp_path, remote_dir)
    driver = sluice(estate, "run", "app@2.0.0")
    try:
        wait_until(lambda: ticks(remote_dir) >= 20, "both applies to print", driver)
    finally:
        driver.kill()
        driver.communicate(timeout=60)
    release(remote_dir)
    # sshd dropped the sessions, but the applies printed on to their end: no SIGPIPE.
    wait_until(lambda: all((remote_dir / f"done-{t}").exists() for t in TARGETS), "their end")
    resumed = sluice(estate, "resume")
    out, _ = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, out[-3000:]
    assert sorted(runs(remote_dir)) == ["end", "end", "start", "start"]  # never run again
    stream = events(out)
    assert {e["target"]: e["how"] for e in stream if e["kind"] == "apply_adopted"} == {
        "a": "finished",
        "b": "finished",
    }
    finished = [e for e in stream if e["kind"] == "apply_finished"]
    assert {e["outcome"] for e in finished} == {"ok"}
    # What the channels streamed is copied to the local spool: `show --output` reads it.
    shown = subprocess.run(
        [SLUICE, "show", str(estate), "1", "--output", "a"], capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("tick 1\n") and shown.stdout.endswith("last words\n")


@pytest.mark.timeout(180)
def test_a_connection_cut_mid_apply_is_re_attached_and_the_real_outcome_recorded(
    sshd: SshServer, tmp_path: Path, remote_dir: Path
) -> None:
    estate = write_estate(sshd, tmp_path, remote_dir)
    driver = sluice(estate, "run", "app@2.0.0")
    try:
        wait_until(lambda: ticks(remote_dir) >= 20, "both applies to print", driver)
        # The per-connection sshd processes only: the connection goes, the applies stay.
        assert sshd_sessions(sshd)
        _kill(sshd_sessions(sshd), signal.SIGKILL)
        wait_until(lambda: ticks(remote_dir) >= 60, "the applies to go on printing", driver)
        release(remote_dir)
        out, _ = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.communicate()
    assert driver.returncode == 0, out[-3000:]
    assert sorted(runs(remote_dir)) == ["end", "end", "start", "start"]
    stream = events(out)
    lines = [e["line"] for e in stream if e["kind"] == "apply_output"]
    assert sum("re-attaching" in line for line in lines) == 2
    assert {e["outcome"] for e in stream if e["kind"] == "apply_finished"} == {"ok"}
    # Every tick each apply printed reached the stream once: the re-attach streams the lines
    # after those received before the cut, none lost and none repeated.
    for target in TARGETS:
        got = [
            e["line"] for e in stream
            if e["kind"] == "apply_output" and e["target"] == target and e["line"].startswith("tick")
        ]  # fmt: skip
        assert got == [f"tick {i}" for i in range(1, len(got) + 1)], (target, got[:5], len(got))
        assert len(got) >= 60 // 2
