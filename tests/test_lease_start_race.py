"""Two drivers started together on an estate with no history yet: one drives, the other is refused
with exit 5 naming the holder — never exit 2 "not a usable sluice history (database is locked)".

The race is in creating the history (switching a new file to WAL, the first migration), so each
trial uses a fresh directory. The in-process trials release both openers at one barrier (the
window is a few milliseconds; ~1 in 15 trials lost it before the fix); the command-line trials
start two real ``sluice run`` at once, as the adversarial run did.
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from sluice.engine.app.session import LeaseHeld, Session
from sluice.engine.model.estate import load_estate
from sluice.engine.store.history import HistoryError

REPO = Path(__file__).resolve().parents[1]

ESTATE = """[estate]
name = "race"
history = "HISTORY"
[[channels]]
name = "c"
[executors.sh]
kind = "local"
apply = "sleep 1"
[modules.m]
versions = ["1", "2"]
initial = "1"
[targets.t]
channel = "c"
executor = "sh"
"""


def _open_together(path: str, barrier, results) -> None:  # runs in a forked child
    estate = load_estate(path)
    barrier.wait(timeout=30)
    session = None
    try:
        session = Session.open(estate)
        results.put("drives")
    except LeaseHeld as exc:
        results.put(f"refused: {exc}")
    except HistoryError as exc:
        results.put(f"error: {exc}")
    barrier.wait(timeout=30)  # the winner holds the lease until the loser has tried
    if session is not None:
        session.close()


def test_two_openers_of_a_new_history_one_drives_the_other_is_refused(tmp_path, histories):
    ctx = multiprocessing.get_context("fork")
    seen: Counter[str] = Counter()
    trials = 40 if histories(tmp_path).kind == "sqlite" else 15
    for trial in range(trials):
        estate = tmp_path / f"t{trial}" / "estate.toml"
        estate.parent.mkdir()
        estate.write_text(ESTATE.replace("HISTORY", histories(estate.parent).setting))
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [
            ctx.Process(target=_open_together, args=(str(estate), barrier, results))
            for _ in range(2)
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(timeout=60)
            assert proc.exitcode == 0
        outcomes = sorted(results.get(timeout=5) for _ in range(2))
        seen[" / ".join(o.split(":")[0] for o in outcomes)] += 1
        assert outcomes[0] == "drives", outcomes
        assert outcomes[1].startswith("refused: estate 'race' is driven by"), outcomes
    assert seen == Counter({"drives / refused": trials}), seen


@pytest.mark.timeout(240)
def test_two_sluice_runs_started_together_on_a_new_history(tmp_path, histories):
    for trial in range(6):
        estate = tmp_path / f"t{trial}" / "estate.toml"
        estate.parent.mkdir()
        estate.write_text(ESTATE.replace("HISTORY", histories(estate.parent).setting))
        command = [sys.executable, "-m", "sluice.cli", "run", str(estate), "m@2", "--headless"]
        procs = [
            subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(2)
        ]
        results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
        codes = sorted(code for code, _, _ in results)
        assert codes == [0, 5], results
        loser = next(err.decode() for code, _, err in results if code == 5)
        assert "is driven by" in loser and "pid" in loser, loser
        assert "database is locked" not in loser


def test_a_postgresql_history_without_psycopg_is_one_line_naming_the_extra(tmp_path):
    estate = tmp_path / "estate.toml"
    estate.write_text(ESTATE.replace("HISTORY", "postgresql://sluice:pw@127.0.0.1:1/none"))
    program = (
        "import sys; sys.modules['psycopg'] = None\n"  # as if it were not installed
        "from sluice.cli import main\n"
        f"sys.exit(main(['history', {str(estate)!r}]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "pip install 'sluice[postgres]'" in result.stderr and "pw@" not in result.stderr
