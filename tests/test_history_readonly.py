"""A history this process may only read (issue 12, item 4): `history`, `show` and `export`
read it; `run` says it is not writable (exit 7). Real processes, a real read-only file and
directory (immutable for root)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from readonly_files import unwritable

ESTATE = """
[estate]
name = "ro-test"

[[channels]]
name = "dev"

[targets.a]
channel = "dev"
executor = "sim"

[executors.sim]
kind = "simulated"
duration = "0s..0s"

[modules.m]
versions = ["1", "2", "3"]
initial = "1"
"""


def sluice(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sluice.cli", *map(str, args)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_read_commands_work_on_a_history_that_cannot_be_written(tmp_path: Path) -> None:
    estate = tmp_path / "estate.toml"
    estate.write_text(ESTATE)
    done = sluice("run", estate, "m@2", "--headless", "--time-scale", "0")
    assert done.returncode == 0, done
    db = tmp_path / ".sluice" / "history.db"
    before = db.read_bytes()
    with unwritable(db, db.parent):
        listed = sluice("history", estate)
        assert listed.returncode == 0, listed
        assert "m" in listed.stdout and "done" in listed.stdout, listed.stdout
        shown = sluice("show", estate, 1, "--json")
        assert shown.returncode == 0, shown
        assert '"outcome": "done"' in shown.stdout, shown.stdout
        exported = sluice("export", estate, 1)
        assert exported.returncode == 0, exported
        assert "m" in exported.stdout
        planned = sluice("plan", estate, "m@3")
        assert planned.returncode == 0, planned
        run = sluice("run", estate, "m@3", "--headless", "--time-scale", "0")
        assert run.returncode == 7, run
        assert run.stderr.count("\n") == 1, run.stderr  # one line
        assert "not writable" in run.stderr and "not usable" not in run.stderr, run.stderr
        assert str(db) in run.stderr
    assert db.read_bytes() == before  # nothing was rewritten
