"""Two "machines" share one PostgreSQL history: each sluice has its own ``SLUICE_HOST``,
``SLUICE_ACTOR`` and working directory (its own copy of the estate file), and only the server in
common. The second is refused while the first drives, watches it, takes over once the first is
killed (after the lease timeout: another host's pid cannot be checked), and both read one ledger.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from history_backends import PgHistory

from sluice.engine.store.lease import LEASE_TIMEOUT

TARGETS = 12


def estate_text(url: str, go: Path) -> str:
    """Each apply logs, then waits for the ``go`` file: machine-a's first two hold it mid-wave."""
    targets = "".join(
        f'[targets.t{i:02d}]\nchannel = "c"\nexecutor = "sh"\n' for i in range(TARGETS)
    )
    apply = f"echo {{target}} $SLUICE_HOST >> applied.log; while [ ! -e {go} ]; do sleep 0.05; done"
    return (
        f'[estate]\nname = "shared"\nhistory = "{url}"\n[[channels]]\nname = "c"\nmax_parallel = 2\n'
        f'[executors.sh]\nkind = "local"\napply = "{apply}"\n'
        '[modules.m]\nversions = ["1", "2"]\ninitial = "1"\n' + targets
    )


class Machine:
    def __init__(self, root: Path, name: str, url: str):
        self.name = name
        self.directory = root / name
        self.directory.mkdir()
        self.estate = self.directory / "estate.toml"
        self.estate.write_text(estate_text(url, root / "go"))
        self.env = {**os.environ, "SLUICE_HOST": name, "SLUICE_ACTOR": f"engineer@{name}"}

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "sluice.cli", args[0], str(self.estate), *args[1:]],
            cwd=self.directory,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = self.start(*args)
        out, err = proc.communicate(timeout=120)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def applied(self) -> list[str]:
        log = self.directory / "applied.log"
        return log.read_text().splitlines() if log.exists() else []


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


@pytest.mark.timeout(240)
def test_two_machines_share_one_postgresql_history(tmp_path, postgres):
    url = postgres.new_database()
    history = PgHistory(url)
    a, b = Machine(tmp_path, "machine-a", url), Machine(tmp_path, "machine-b", url)
    first = a.start("run", "m@2", "--headless")
    try:
        wait_for(lambda: len(a.applied()) >= 2, "machine-a applied 2 targets")
        refused = b.run("run", "m@2", "--headless")
        assert refused.returncode == 5, refused.stdout + refused.stderr
        assert "driven by" in refused.stderr and f"@machine-a (pid {first.pid}" in refused.stderr
        # machine-b watches: the rollout is running, with machine-a's applies in it.
        listed = json.loads(b.run("history", "--json").stdout)
        assert [r["outcome"] for r in listed] == ["running"] and listed[0]["host"] == "machine-a"
        shown = b.run("show", "1", "--json")
        assert shown.returncode == 0, shown.stderr
        first.send_signal(signal.SIGKILL)  # machine-a dies mid-wave, two applies in flight
        first.communicate(timeout=30)
        (tmp_path / "go").touch()  # its orphaned applies end
        done_by_a = len(a.applied())
        # Another host's pid cannot be looked at: the lease is taken over once it is silent.
        wait_for(
            lambda: (
                time.time() - history.query("SELECT heartbeat FROM lease")[0][0] > LEASE_TIMEOUT + 1
            ),
            "the lease went silent",
            90,
        )
        resumed = b.run("resume", "--headless")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert "took over the lease from" in resumed.stdout and "@machine-a" in resumed.stdout
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    # Every target applied once, except the two machine-a was applying when it died (unknown,
    # re-applied by machine-b once they had ended).
    ran = [line.split()[0] for line in a.applied() + b.applied()]
    assert set(ran) == {f"t{i:02d}" for i in range(TARGETS)}
    assert sorted(ran) == sorted([f"t{i:02d}" for i in range(TARGETS)] + ["t00", "t01"])
    assert len(a.applied()) == done_by_a == 2
    # Both machines read the same ledger.
    for machine in (a, b):
        plan = json.loads(machine.run("plan", "m@2", "--json").stdout)
        assert all(t["from"] == "2" for w in plan["waves"] for t in w["targets"]), plan
    takeover = history.query("SELECT holder, previous FROM lease_log WHERE action = 'takeover'")
    assert len(takeover) == 1 and "@machine-b" in takeover[0][0] and "@machine-a" in takeover[0][1]
