"""A driver that lost its lease never acts: SIGSTOP a real ``sluice run`` past the lease timeout,
let a ``sluice resume`` (another "machine": its own ``SLUICE_HOST``) take over, SIGCONT the first.

The first must stop at once — no apply launched, nothing recorded — say so and exit 6. Every
apply takes a ``flock`` on its target's lock file without waiting: two applies of one target
at once would leave an ``overlap`` line. Each apply also writes which driver launched it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sluice.engine.store.lease import LEASE_TIMEOUT

REPO = Path(__file__).resolve().parents[1]
TARGETS = 40
APPLY = (
    # placeholders bare (sluice quotes them; `check` refuses one inside shell quotes)
    "flock -n -E 99 locks/{target}.lock sh -c 'echo $0 $SLUICE_HOST >> applied.log; "
    "sleep 0.4' {target}; [ $? -ne 99 ] || echo overlap {target} $SLUICE_HOST >> overlaps.log"
)


def write_estate(directory: Path, history: str) -> Path:
    (directory / "locks").mkdir()
    targets = "".join(
        f'[targets.t{i:02d}]\nchannel = "c"\nexecutor = "sh"\n' for i in range(TARGETS)
    )
    path = directory / "estate.toml"
    path.write_text(
        f'[estate]\nname = "fenced"\nhistory = "{history}"\n[[channels]]\nname = "c"\nmax_parallel = 2\n'
        f'[executors.sh]\nkind = "local"\napply = "{APPLY}"\n'
        '[modules.m]\nversions = ["1", "2"]\ninitial = "1"\n' + targets
    )
    return path


def sluice(directory: Path, host: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "SLUICE_HOST": host, "SLUICE_ACTOR": f"driver-{host}"}
    return subprocess.Popen(
        [sys.executable, "-m", "sluice.cli", *args],
        cwd=directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


def heartbeat_age(history) -> float:
    rows = history.query("SELECT heartbeat FROM lease")
    return 0.0 if not rows else time.time() - rows[0][0]


@pytest.mark.timeout(480)
def test_a_stopped_driver_taken_over_stops_at_once_and_exits_6(tmp_path, histories):
    history = histories(tmp_path)
    estate = write_estate(tmp_path, history.setting)
    applied = tmp_path / "applied.log"
    first = sluice(tmp_path, "host-a", "run", str(estate), "m@2", "--headless")
    second = None
    try:
        wait_for(lambda: len(lines(applied)) >= 3, "the first driver applied 3 targets")
        first.send_signal(signal.SIGSTOP)  # a laptop lid closed mid-wave
        wait_for(lambda: heartbeat_age(history) > LEASE_TIMEOUT + 1, "the lease went silent", 90)
        second = sluice(tmp_path, "host-b", "resume", str(estate), "--headless")
        wait_for(
            lambda: sum(line.endswith("host-b") for line in lines(applied)) >= 2,
            "the second driver applied 2 targets",
            150,  # a bound, not a speed: at load 14 the takeover and 2 applies took over 60 s
        )
        by_first = sum(line.endswith("host-a") for line in lines(applied))
        first.send_signal(signal.SIGCONT)
        out, err = first.communicate(timeout=60)
        # Stopped at once: it launched nothing after it was continued, and said why.
        assert first.returncode == 6, out + err
        assert "lost the lease" in out + err, out + err
        assert sum(line.endswith("host-a") for line in lines(applied)) == by_first
        out2, err2 = second.communicate(timeout=120)
        assert second.returncode == 0, out2 + err2
        assert "@host-a pid" in out2 and "took over the lease" in out2
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.communicate()
    assert lines(tmp_path / "overlaps.log") == []  # two applies of one target never at once
    assert history.query("SELECT outcome, exit_code FROM rollouts") == [("done", 0)]
    ledger = dict(history.query("SELECT target, version FROM ledger ORDER BY id"))
    # Nothing the first driver did after it lost the lease is in the history.
    assert history.query("SELECT COUNT(*) FROM applies WHERE outcome = 'aborted'") == [(0,)]
    log = history.query("SELECT action, holder FROM lease_log ORDER BY rowid")
    assert len(ledger) == TARGETS and set(ledger.values()) == {"2"}
    actions = [action for action, _ in log]
    assert actions[:2] == ["acquire", "takeover"], log
