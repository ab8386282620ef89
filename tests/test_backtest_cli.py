"""``sluice backtest`` on a recorded rollout of the sample estate (the 2.0.0 dev regression).

The real ``sluice`` in a subprocess records the rollout, then re-judges it with tighter and
looser checks written beside it; the history must be left exactly as it was.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_estate.toml"

pytestmark = pytest.mark.timeout(180)


def sluice(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sluice.cli", *map(str, args)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample estate after `sluice run … 2.0.0`: halted by dev's latency gate (exit 1)."""
    root = tmp_path_factory.mktemp("backtest")
    shutil.copy(SAMPLE, root / "estate.toml")
    run = sluice("run", root / "estate.toml", "postgres-operator@2.0.0", "--headless",
                 "--time-scale", "0")  # fmt: skip
    assert run.returncode == 1, run.stdout + run.stderr
    return root / "estate.toml"


def _variant(estate: Path, name: str, *edits: tuple[str, str]) -> Path:
    text = estate.read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = estate.with_name(name)
    path.write_text(text)
    return path


def _digest(estate: Path) -> str:
    db = estate.parent / ".sluice" / "history.db"
    return hashlib.sha256(db.read_bytes()).hexdigest()


def test_same_checks_judge_every_wave_as_recorded(recorded: Path) -> None:
    result = sluice("backtest", recorded, 1)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "with the same checks: every recorded verdict unchanged (2 waves)" in result.stdout
    assert "= wave 2 dev 1/1: recorded failed at 6s, now failed at 6s" in result.stdout
    assert "wave 3 staging 1/2: not run in the recorded rollout" in result.stdout


def test_tighter_limit_halts_the_dev_regression_earlier(recorded: Path) -> None:
    before = _digest(recorded)
    tight = _variant(
        recorded, "tight.toml",
        ("failure_limit = 1 ", "failure_limit = 0 "),
    )  # fmt: skip
    result = sluice("backtest", recorded, 1, "--estate", tight)
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "≠ wave 2 dev 1/1: recorded failed at 6s, now failed at 3s" in out
    assert "p99_latency failure_limit 0 instead of 1" in out
    assert "the dev regression would have halted 3s earlier" in out
    assert "= wave 1 ephemeral 1/1: recorded passed at 15s, now passed at 15s" in out
    assert _digest(recorded) == before  # read only


def test_looser_limits_would_have_let_the_regression_through_json(recorded: Path) -> None:
    loose = _variant(
        recorded, "loose.toml",
        ("max = 0.25 ", "max = 0.5 "),
        ('max_increase = "50%"', 'max_increase = "300%"'),
    )  # fmt: skip
    result = sluice("backtest", recorded, 1, "--estate", loose, "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["rollout_id"] == 1 and data["changed"] is True
    assert "p99_latency max 0.5 instead of 0.25" in data["changes"]
    assert "p99_latency max_increase 300% instead of 50%" in data["changes"]
    dev = data["waves"][1]
    assert dev["recorded"]["verdict"] == "failed" and dev["changed"]
    # The recorded soak halted after 6 s: what the rest would have shown was never measured.
    assert dev["new"]["verdict"] == "undecided"
    assert "the recorded soak ended early at 6s" in dev["new"]["reasons"][0]
    first = dev["first_difference"]
    assert (first["check"], first["recorded"], first["new"], first["elapsed"]) == (
        "p99_latency", "fail", "pass", 3.0
    )  # fmt: skip
    assert "wave 2 (dev 1/1) would have been undecided instead of failed" in data["summary"]
    assert [w["recorded"]["verdict"] for w in data["waves"][2:]] == ["not run"] * 5


def test_a_check_with_no_recorded_samples_is_reported_missing(recorded: Path) -> None:
    more = _variant(
        recorded, "more.toml",
        ('checks = ["p99_latency", "error_rate"]', 'checks = ["p99_latency", "error_rate", "restarts"]'),
    )  # fmt: skip
    result = sluice("backtest", recorded, 1, "--estate", more, "--json")
    data = json.loads(result.stdout)
    assert data["waves"][0]["missing_checks"] == ["restarts"]
    assert data["waves"][0]["new"]["verdict"] == "passed"  # judged on what was measured
    assert result.returncode == 0


def test_bad_input(recorded: Path) -> None:
    result = sluice("backtest", recorded, 99)
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"sluice: there is no rollout #99 in {recorded.parent / '.sluice' / 'history.db'}"
    )
    result = sluice("backtest", recorded, 1, "--estate", recorded.with_name("nope.toml"))
    assert (
        result.returncode == 2 and "nope.toml" in result.stderr and "Traceback" not in result.stderr
    )
