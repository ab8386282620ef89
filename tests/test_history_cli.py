"""The history through the command line: run/resume/rollback record it; history/show/export read it.

Every test runs the real ``sluice`` in a subprocess against a copy of an estate in a temp dir.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import time
import tomllib
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_estate.toml"
OP = "postgres-operator"


def sluice(*args: object, env: dict[str, str] | None = None, timeout: float = 120):
    return subprocess.run(
        [sys.executable, "-m", "sluice.cli", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def ok(result, code: int = 0):
    assert result.returncode == code, (
        f"exit {result.returncode} != {code}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


@pytest.fixture
def sample(tmp_path) -> Path:
    shutil.copy(SAMPLE, tmp_path / "estate.toml")
    return tmp_path / "estate.toml"


def db_of(estate: Path) -> Path:
    return estate.parent / ".sluice" / "history.db"


def query(estate: Path, sql: str, *params) -> list[tuple]:
    conn = sqlite3.connect(db_of(estate))
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def peek(estate: Path, sql: str) -> list[tuple]:
    """``query`` while another process may still be creating the file: nothing yet is empty."""
    try:
        return query(estate, sql) if db_of(estate).exists() else []
    except sqlite3.OperationalError:  # no such table yet (or locked for a moment)
        return []


def ledger(estate: Path, module: str = OP) -> dict[str, str]:
    return dict(
        query(estate, "SELECT target, version FROM ledger WHERE module = ? ORDER BY id", module)
    )


def channel_targets(estate: Path, *channels: str) -> set[str]:
    data = tomllib.loads(estate.read_text())
    return {name for name, t in data["targets"].items() if t["channel"] in channels}


FAST = ("--headless", "--time-scale", "0")


# --- run, resume, history, show, export ----------------------------------------------------------------


@pytest.mark.timeout(240)
def test_one_wave_per_job_then_history_show_and_export(sample):
    ok(sluice("run", sample, f"{OP}@2.0.1", *FAST, "--until-wave", "1"), 4)
    ok(sluice("resume", sample, *FAST, "--until-wave", "3"), 4)
    out = ok(sluice("resume", sample, "1", *FAST, "--approve")).stdout
    assert "▶ resuming #1" in out and "■ done (exit 0)" in out
    applies = query(sample, "SELECT target, outcome FROM applies WHERE rollout_id = 1")
    assert len(applies) == 36 and {o for _, o in applies} == {"ok"}
    assert len({t for t, _ in applies}) == 36  # each target applied exactly once over 3 jobs

    table = ok(sluice("history", sample)).stdout
    assert re.search(r"│\s+1 │ rollout\s+│ postgres-operator\s+│ 1\.12\.0 → 2\.0\.1 │", table)
    assert re.search(r"│ done\s+│\s+7/7 │", table)

    [entry] = json.loads(ok(sluice("history", sample, "--json")).stdout)
    assert entry["id"] == 1 and entry["outcome"] == "done" and entry["exit_code"] == 0
    assert (entry["waves_done"], entry["waves_total"], entry["kind"]) == (7, 7, "rollout")
    assert entry["duration"] == pytest.approx(entry["finished"] - entry["started"])

    shown = ok(sluice("show", sample, 1)).stdout
    assert shown.startswith("rollout #1 (rollout) · postgres-operator 1.12.0 → 2.0.1")
    assert "── wave 5 · production 1/3 · approved · gate passed" in shown
    assert "✓ prod-eu-west-1-a apply 1.12.0 → 2.0.1" in shown
    # production's entry approval and its three gates, each recorded with who approved
    assert shown.count("● ") == 4 and "approve wave 7: --approve" in shown

    data = json.loads(ok(sluice("show", sample, 1, "--json")).stdout)
    assert [w["outcome"] for w in data["waves"]] == ["passed"] * 4 + ["approved"] * 3

    exported = tomllib.loads(ok(sluice("export", sample, 1)).stdout)
    assert exported["format"] == 1
    assert exported["rollout"]["id"] == 1 and exported["rollout"]["outcome"] == "done"
    assert exported["plan"]["module"] == OP and len(exported["plan"]["waves"]) == 7
    assert [w["number"] for w in exported["waves"]] == list(range(1, 8))
    targets = [a["target"] for w in exported["waves"] for a in w["applies"]]
    assert sorted(targets) == sorted(
        channel_targets(sample, "ephemeral", "dev", "staging", "production")
    )
    first = exported["waves"][0]["applies"][0]
    assert (first["target"], first["outcome"], first["version"]) == ("eph-101", "ok", "2.0.1")
    soak = [s for s in exported["waves"][0]["samples"] if s["phase"] == "soak"]
    assert soak and all(s["outcome"] == "pass" for s in soak)
    assert [a["action"] for a in exported["operator_actions"]] == ["approve"] * 4  # entry + 3 gates


@pytest.mark.timeout(120)
def test_json_output_is_exactly_the_recorded_stream(sample):
    out = ok(sluice("run", sample, f"{OP}@2.0.1", *FAST, "--json", "--until-wave", "2"), 4).stdout
    printed = [json.loads(line) for line in out.splitlines()]
    rows = query(sample, "SELECT seq, ts, kind, data FROM events ORDER BY seq")
    recorded = [{"kind": k, **json.loads(d), "seq": s, "ts": t} for s, t, k, d in rows]
    assert printed == recorded


@pytest.mark.timeout(120)
def test_reading_commands_refuse_what_is_not_there(sample):
    result = ok(sluice("history", sample), 2)
    assert "no history yet" in result.stderr and "Traceback" not in result.stderr
    ok(sluice("run", sample, f"{OP}@2.0.1", *FAST, "--until-wave", "1"), 4)
    for args in (("show", sample, 7), ("export", sample, 7)):
        result = ok(sluice(*args), 2)
        assert "there is no rollout #7" in result.stderr
    result = ok(sluice("resume", sample, "7", *FAST), 2)
    assert "no rollout #7" in result.stderr


# --- the ledger: rollouts, halts, rollbacks, plans ---------------------------------------------------------


@pytest.mark.timeout(240)
def test_the_ledger_after_a_rollout_and_rollbacks_drives_plans(sample):
    ok(sluice("run", sample, f"{OP}@2.0.1", *FAST, "--approve"))
    everyone = channel_targets(sample, "ephemeral", "dev", "staging", "production")
    assert ledger(sample) == dict.fromkeys(everyone, "2.0.1")

    plan = json.loads(ok(sluice("plan", sample, f"{OP}@2.0.1", "--json")).stdout)
    assert all(t["noop"] for w in plan["waves"] for t in w["targets"])
    text = ok(sluice("plan", sample, f"{OP}@2.0.1")).stdout
    assert "0 applies, 36 no-op (already at 2.0.1)" in text

    out = ok(sluice("rollback", sample, "--wave", "2", *FAST)).stdout
    assert "■ done (exit 0)" in out
    dev = channel_targets(sample, "dev")
    assert {t: v for t, v in ledger(sample).items() if t in dev} == dict.fromkeys(dev, "1.12.0")
    ok(sluice("rollback", sample, "--target", "eph-101", "--rollout", "1", *FAST))
    assert ledger(sample)["eph-101"] == "1.12.0"
    assert ledger(sample)["eph-102"] == "2.0.1"

    plan = json.loads(ok(sluice("plan", sample, f"{OP}@2.0.1", "--json")).stdout)
    changing = {t["name"] for w in plan["waves"] for t in w["targets"] if not t["noop"]}
    assert changing == dev | {"eph-101"}

    history = json.loads(ok(sluice("history", sample, "--json")).stdout)
    assert [(h["id"], h["kind"], h["outcome"]) for h in history] == [
        (3, "rollback", "done"),
        (2, "rollback", "done"),
        (1, "rollout", "done"),
    ]
    assert (history[1]["from_versions"], history[1]["version"]) == ("2.0.1", "1.12.0")
    assert history[1]["waves_done"] == history[1]["waves_total"] == 1
    shown = ok(sluice("show", sample, 2)).stdout
    assert "✓ dev-eu-1 rollback 2.0.1 → 1.12.0" in shown

    # Rolling back again finds nothing to do: the targets already run what they ran before.
    out = ok(sluice("rollback", sample, "--wave", "2", "--rollout", "1", *FAST)).stdout
    assert "nothing to roll back" in out
    assert ok(sluice("rollback", sample, "--wave", "9", *FAST), 2).stderr.count("has 7 waves") == 1
    assert (
        "not part of rollout" in ok(sluice("rollback", sample, "--target", "nope", *FAST), 2).stderr
    )
    assert (
        "no rollout #42"
        in ok(sluice("rollback", sample, "--wave", "1", "--rollout", "42", *FAST), 2).stderr
    )


@pytest.mark.timeout(180)
def test_a_halted_rollout_keeps_what_applied_and_show_names_the_failing_values(sample):
    out = ok(sluice("run", sample, f"{OP}@2.0.0", *FAST), 1).stdout
    assert "halted at wave 2" in out
    applied = channel_targets(sample, "ephemeral", "dev")
    assert ledger(sample) == dict.fromkeys(applied, "2.0.0")  # the dev applies did happen

    shown = ok(sluice("show", sample, 1)).stdout
    assert "halted (exit 1)" in shown
    assert "── wave 2 · dev 1/1 · halted · gate failed" in shown
    assert "in progress" not in shown
    failing = re.findall(
        r"p99_latency on (dev-[a-z]+-\d): \[([0-9. ]+)\] latest fail: (0\.\d+) > max 0\.25", shown
    )
    assert {name for name, _, _ in failing} == channel_targets(sample, "dev")
    for _, values, latest in failing:
        assert values.split()[-1] == f"{float(latest):.4g}" and float(latest) > 0.25
    assert re.search(r"p99_latency on dev-eu-1: 2 failed measurement\(s\) > limit 1", shown)

    exported = tomllib.loads(ok(sluice("export", sample, 1)).stdout)
    wave = exported["waves"][1]
    assert (wave["outcome"], wave["verdict"]) == ("halted", "failed")
    assert any(s["outcome"] == "fail" and s["value"] > 0.25 for s in wave["samples"])

    # The next plan starts from the ledger: ephemerals and dev move from 2.0.0.
    plan = json.loads(ok(sluice("plan", sample, f"{OP}@2.0.1", "--json")).stdout)
    froms = {t["name"]: t["from"] for w in plan["waves"] for t in w["targets"]}
    assert {t for t, v in froms.items() if v == "2.0.0"} == applied
    # A halted rollout is over: a new version is a new rollout.
    assert "no rollout of this estate is left" in ok(sluice("resume", sample, *FAST), 2).stderr


# --- the file and secrets ------------------------------------------------------------------------------------

SECRET_ESTATE = """\
[estate]
name = "secretive"

[[channels]]
name = "only"
max_parallel = 2
max_failures = 1

[executors.sh]
kind = "local"
apply = "echo token={env.SLUICE_TEST_TOKEN} {target}; echo {env.SLUICE_TEST_TOKEN} > got-{target}; echo bad {env.SLUICE_TEST_TOKEN} >&2; test {target} != t-3"

[modules.m]
versions = ["1", "2"]
initial = "1"
"""


@pytest.mark.timeout(180)
def test_the_file_is_private_and_secrets_never_reach_it_or_the_output(tmp_path):
    estate = tmp_path / "estate.toml"
    estate.write_text(
        SECRET_ESTATE
        + "".join(f'[targets.t-{i}]\nchannel = "only"\nexecutor = "sh"\n' for i in range(1, 5))
    )
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    env = {**os.environ, "SLUICE_TEST_TOKEN": secret}
    json_out = ok(sluice("run", estate, "m@2", *FAST, "--json", env=env))
    text_out = ok(sluice("rollback", estate, "--target", "t-1", *FAST, env=env))
    # The command did receive the secret …
    assert (tmp_path / "got-t-1").read_text().strip() == secret
    # … and no byte of the history, its side files or any output holds it.
    db = db_of(estate)
    files = sorted(p for p in db.parent.iterdir() if p.is_file())
    assert db in files
    for path in files:
        assert secret.encode() not in path.read_bytes(), path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    # The spools hold the raw output (docs/spool.md): private, like the history.
    for path in (db.parent / "applies").rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path
    for result in (json_out, text_out):
        assert secret not in result.stdout + result.stderr
    for args in (("show", estate, 1), ("show", estate, 1, "--json"), ("export", estate, 1)):
        assert secret not in ok(sluice(*args, env=env)).stdout
    # The masked output was recorded (so the check above is not vacuous).
    lines = [
        json.loads(d)["line"]
        for (d,) in query(estate, "SELECT data FROM events WHERE kind = 'apply_output'")
    ]
    assert "token=•••••• t-2" in lines and "bad ••••••" in lines
    [(reason,)] = query(
        estate, "SELECT reason FROM applies WHERE target = 't-3' AND rollout_id = 1"
    )
    assert "bad ••••••" in reason
    [(command,)] = query(
        estate, "SELECT command FROM applies WHERE target = 't-2' AND rollout_id = 1"
    )
    assert '"${SLUICE_TEST_TOKEN}"' in command


# --- one driver per estate ---------------------------------------------------------------------------------

SLOW_ESTATE = """\
[estate]
name = "slow"

[[channels]]
name = "only"
max_parallel = 1

[executors.sh]
kind = "local"
apply = "sleep 60"

[modules.m]
versions = ["1", "2"]
initial = "1"

[targets.a]
channel = "only"
executor = "sh"

[targets.b]
channel = "only"
executor = "sh"
"""


@pytest.mark.timeout(180)
def test_a_second_driver_is_refused_with_exit_5_naming_the_holder(tmp_path):
    estate = tmp_path / "estate.toml"
    estate.write_text(SLOW_ESTATE)
    first = subprocess.Popen(
        [sys.executable, "-m", "sluice.cli", "run", str(estate), "m@2", *FAST],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not peek(estate, "SELECT 1 FROM applies"):
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first driver never started an apply"
            time.sleep(0.05)
        holder = f"@{socket.gethostname()} (pid {first.pid}"
        for args in (
            ("run", estate, "m@2", *FAST),
            ("resume", estate, *FAST),
            ("rollback", estate, "--wave", "1", *FAST),
        ):
            refused = ok(sluice(*args), 5)
            assert holder in refused.stderr and "driven by" in refused.stderr
        # Watching is fine while it drives.
        assert "running" in ok(sluice("history", estate)).stdout
        ok(sluice("show", estate, 1))
    finally:
        first.terminate()  # SIGTERM: a clean abort (exit 3), the apply's process group stopped
        out, err = first.communicate(timeout=60)
    assert first.returncode == 3, out + err
    assert query(estate, "SELECT target, outcome FROM applies") == [("a", "aborted")]
    assert query(estate, "SELECT outcome, exit_code FROM rollouts") == [("aborted", 3)]
    assert [a for (a,) in query(estate, "SELECT action FROM lease_log ORDER BY rowid")] == [
        "acquire",
        "release",
    ]
    assert query(estate, "SELECT * FROM lease") == []
