"""Governance from the command line, every part a real process: a headless driver, and
``sluice approve|pause|unpause|abort|freeze|unfreeze`` from "other terminals"."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_estate.toml"
OP = "postgres-operator"


def env(actor: str | None = None) -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("NO_COLOR", None)
    e.pop("SLUICE_ACTOR", None)
    if actor:
        e["SLUICE_ACTOR"] = actor
    return e


def sluice(
    *args: object, actor: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sluice.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env(actor),
        timeout=timeout,
    )


class Driver:
    """A headless ``sluice run`` in the background whose output lines the test can wait for."""

    def __init__(self, *args: object):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sluice.cli", *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env("driver"),
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} never printed:\n" + "\n".join(self.lines))

    def end(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def estate_file(tmp_path: Path, *, approvers: int = 1, extra: str = "") -> Path:
    text = SAMPLE.read_text().replace(
        'entry = "manual"                      # manual:',
        f'entry = "manual"\napprovers = {approvers}                         # manual:',
    )
    path = tmp_path / "estate.toml"
    path.write_text(text + extra)
    return path


@pytest.fixture
def drivers() -> Iterator[list[Driver]]:
    started: list[Driver] = []
    yield started
    for driver in started:
        driver.stop()


def production(path: Path) -> set[str]:
    import tomllib

    data = tomllib.loads(path.read_text())
    return {n for n, t in data["targets"].items() if t["channel"] == "production"}


def ledger(path: Path) -> dict[str, str]:
    conn = sqlite3.connect(path.parent / ".sluice" / "history.db")
    try:
        return dict(conn.execute("SELECT target, version FROM ledger WHERE module = ?", [OP]))
    finally:
        conn.close()


@pytest.mark.timeout(120)
def test_two_approvers_from_two_processes_and_the_same_actor_twice_counts_once(tmp_path, drivers):
    path = estate_file(tmp_path, approvers=2)
    driver = Driver("run", path, f"{OP}@2.0.1", "--headless", "--wait", "--time-scale", "0")
    drivers.append(driver)
    driver.wait_for("■ needs approval: production needs approval to start: 0 of 2")
    assert production(path).isdisjoint(ledger(path))  # nothing of production applied yet

    alice = sluice("approve", path, "--wave", "5", "--reason", "change ticket 7", actor="alice")
    assert alice.returncode == 0, alice.stderr
    assert alice.stdout.startswith("1 of 2 approvals of wave 5 (by alice)")
    twice = sluice("approve", path, actor="alice")
    assert twice.returncode == 1
    assert "alice already approved wave 5: 1 of 2; another person must approve" in twice.stderr
    assert production(path).isdisjoint(ledger(path))  # one person is not enough

    bob = sluice("approve", path, "--reason", "lgtm", actor="bob")
    assert bob.returncode == 0, bob.stderr
    assert bob.stdout.strip() == "wave 5 approved (by alice, bob)"
    driver.wait_for("── wave 5 · production 1/3")
    driver.wait_for(
        "■ awaiting approval: gate passed; production needs approval to continue: 0 of 2"
    )
    assert sluice("abort", path, "--reason", "done testing", actor="bob").returncode == 0
    assert driver.end() == 3
    shown = sluice("show", path, "1").stdout
    assert "alice approve wave 5: change ticket 7" in shown
    assert "bob approve wave 5: lgtm" in shown
    assert shown.count("approve wave 5") == 2  # alice's second approval was refused, not counted


@pytest.mark.timeout(120)
def test_each_request_against_a_headless_driver(tmp_path, drivers):
    path = estate_file(tmp_path)
    nothing = sluice("pause", path)
    assert nothing.returncode == 4 and "no rollout is running" in nothing.stderr

    driver = Driver("run", path, f"{OP}@2.0.1", "--headless", "--wait", "--time-scale", "0")
    drivers.append(driver)
    driver.wait_for("■ needs approval")
    wrong = sluice("approve", path, "--wave", "3", actor="ops")
    assert wrong.returncode == 1
    assert "wave 3 is not waiting for approval (wave 5 is)" in wrong.stderr

    paused = sluice("pause", path, "--reason", "lunch", actor="ops")
    assert paused.returncode == 0 and paused.stdout.startswith("paused")
    assert sluice("pause", path, actor="ops").returncode == 1  # already paused
    unpaused = sluice("unpause", path, actor="ops")
    assert (unpaused.returncode, unpaused.stdout.strip()) == (0, "resumed")

    approved = sluice("approve", path, "--wave", "5", actor="ops")
    assert (approved.returncode, approved.stdout.strip()) == (0, "wave 5 approved")
    driver.wait_for("── wave 5 · production 1/3")
    driver.wait_for("■ awaiting approval")
    aborted = sluice("abort", path, "--reason", "seen enough", actor="ops")
    assert aborted.returncode == 0, aborted.stderr
    assert driver.end() == 3
    out = "\n".join(driver.lines)
    assert "● pause by ops: lunch" in out and "● resume by ops" in out
    assert "! request from ops: approve wave 3 — refused: wave 3 is not waiting" in out
    assert "■ aborted (exit 3): aborted by ops: seen enough" in out
    after = sluice("abort", path, actor="ops")
    assert after.returncode == 4 and "no rollout is running" in after.stderr


@pytest.mark.timeout(60)
def test_a_deny_period_covering_now_stops_a_headless_run_with_4_naming_it(tmp_path):
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    start, end = (now - dt.timedelta(days=1)).isoformat(), (now + dt.timedelta(days=1)).isoformat()
    path = estate_file(
        tmp_path,
        extra=f"""
[[windows]]
name = "maintenance"
timezone = "Europe/Berlin"
deny = [{{ start = {start}, end = {end}, reason = "datacenter move" }}]
""",
    )
    result = sluice("run", path, f"{OP}@2.0.1", "--headless", "--time-scale", "0")
    assert result.returncode == 4, result.stdout + result.stderr
    last = result.stdout.rstrip().splitlines()[-1]
    assert last.startswith("■ stopped (exit 4): wave 1 (ephemeral 1/1) held: ephemeral opens ")
    assert "deny period of window 'maintenance': datacenter move" in last
    assert "── wave 1" not in result.stdout and ledger(path) == {}
    # Bypassed with a reason (recorded), the waves start.
    bypassed = sluice(
        "resume", path, "--headless", "--time-scale", "0", "--until-wave", "1",
        "--bypass-window", "emergency fix",
    )  # fmt: skip
    assert bypassed.returncode == 4, bypassed.stdout + bypassed.stderr
    assert "● bypass_window wave 1 by " in bypassed.stdout and ": emergency fix" in bypassed.stdout
    assert "── wave 1" in bypassed.stdout


@pytest.mark.timeout(120)
def test_freeze_and_unfreeze_with_a_running_rollout(tmp_path, drivers):
    path = estate_file(tmp_path)
    driver = Driver("run", path, f"{OP}@2.0.1", "--headless", "--wait", "--time-scale", "0")
    drivers.append(driver)
    driver.wait_for("■ needs approval")  # running, waiting before production
    frozen = sluice("freeze", path, "--reason", "incident 42", actor="oncall")
    assert frozen.returncode == 0 and "frozen" in frozen.stdout, frozen.stderr
    # Approved while frozen: the wave is held by the freeze, not started.
    assert sluice("approve", path, actor="lead").returncode == 0
    driver.wait_for("■ held: estate frozen by oncall: incident 42")
    assert "── wave 5" not in "\n".join(driver.lines)
    assert production(path).isdisjoint(ledger(path))
    unfrozen = sluice("unfreeze", path, actor="oncall")
    assert (
        unfrozen.returncode == 0 and "unfrozen (frozen by oncall: incident 42)" in unfrozen.stdout
    )
    driver.wait_for("── wave 5 · production 1/3")
    assert sluice("abort", path, "--reason", "enough", actor="oncall").returncode == 0
    assert driver.end() == 3
    # Frozen, a new run does not start at all; with --until a freeze lifts itself.
    assert sluice("freeze", path, "--reason", "quiet period", "--until", "1h").returncode == 0
    refused = sluice("run", path, f"{OP}@2.0.1", "--headless", "--time-scale", "0")
    assert refused.returncode == 4
    assert "not started: estate frozen by " in refused.stderr and "quiet period" in refused.stderr
    assert sluice("unfreeze", path).returncode == 0
    again = sluice("unfreeze", path)
    assert again.returncode == 0 and "was not frozen" in again.stdout
    bad = sluice("freeze", path, "--reason", "x", "--until", "yesterday-ish")
    assert bad.returncode == 2 and "--until 'yesterday-ish'" in bad.stderr
