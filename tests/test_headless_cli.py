"""`sluice run … --headless` as a user runs it: a real process, real exit codes, real signals.

Every test works on its own copy of the estate file: history (and the version ledger the plan
reads) lives next to it, so runs must not see each other's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_estate.toml"
FAST = ["--time-scale", "0.005"]


def sluice(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sluice.cli", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("NO_COLOR", None)
    return env


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "estate.toml"
    shutil.copy(SAMPLE, path)
    return path


@pytest.mark.timeout(60)
def test_2_0_0_halts_at_the_dev_gate_with_the_failing_measurements(sample):
    result = sluice(
        "run", str(sample), "postgres-operator@2.0.0", "--headless", *FAST, cwd=sample.parent
    )
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "── wave 2 · dev 1/1" in out
    assert "gate FAILED" in out
    # the measurements behind the verdict: values, baseline and the limits they broke
    assert "p99_latency on dev-eu-1: [" in out
    assert "> max 0.25" in out and "baseline 0.1" in out
    assert "── wave 3" not in out
    assert out.rstrip().splitlines()[-1].startswith("■ halted (exit 1): halted at wave 2 (dev 1/1)")


@pytest.mark.timeout(60)
def test_2_0_1_stops_before_production_without_approve(sample):
    result = sluice(
        "run", str(sample), "postgres-operator@2.0.1", "--headless", *FAST, cwd=sample.parent
    )
    assert result.returncode == 4, result.stdout + result.stderr
    last = result.stdout.rstrip().splitlines()[-1]
    assert last.startswith(
        "■ stopped (exit 4): wave 5 (production 1/3) not started: "
        "production needs approval to start: 0 of 1"
    )
    assert "sluice resume --approve" in last
    assert "── wave 5" not in result.stdout  # the sample's production has entry = "manual"


@pytest.mark.timeout(60)
def test_2_0_1_with_approve_completes(sample):
    result = sluice(
        "run",
        str(sample),
        "postgres-operator@2.0.1",
        "--headless",
        "--approve",
        *FAST,
        cwd=sample.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # production's entry, then its three waves' manual gates
    assert result.stdout.count("● approve wave") == 4
    assert "■ done (exit 0): 36 applied" in result.stdout


@pytest.mark.timeout(60)
def test_until_wave_stops_after_that_wave_with_4(sample):
    result = sluice(
        "run",
        str(sample),
        "postgres-operator@2.0.1",
        "--headless",
        "--until-wave",
        "2",
        *FAST,
        cwd=sample.parent,
    )
    assert result.returncode == 4, result.stdout + result.stderr
    assert "── wave 2" in result.stdout and "── wave 3" not in result.stdout
    assert "stopped after wave 2" in result.stdout


@pytest.mark.timeout(60)
def test_json_prints_ndjson_one_event_per_line(sample):
    result = sluice(
        "run",
        str(sample),
        "postgres-operator@2.0.0",
        "--headless",
        "--json",
        *FAST,
        cwd=sample.parent,
    )
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    events = [json.loads(line) for line in lines]
    assert all(isinstance(e, dict) and "kind" in e and "seq" in e for e in events)
    assert events[0]["kind"] == "rollout_started"
    assert events[-1]["kind"] == "rollout_finished" and events[-1]["exit_code"] == 1
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs))
    gates = [e for e in events if e["kind"] == "gate"]
    assert [g["verdict"] for g in gates] == ["passed", "failed"]
    assert gates[-1]["checks"]["p99_latency"]["targets"]["dev-eu-1"]["values"]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("scale", ["-1", "nan", "fast"])
def test_a_bad_time_scale_is_bad_input(sample, scale):
    result = sluice(
        "run",
        str(sample),
        "postgres-operator@2.0.0",
        "--headless",
        f"--time-scale={scale}",
        cwd=sample.parent,
    )
    assert result.returncode == 2
    assert "--time-scale" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.timeout(30)
def test_a_negative_time_scale_as_a_separate_argument_is_bad_input(sample):
    result = sluice(
        "run",
        str(sample),
        "postgres-operator@2.0.0",
        "--headless",
        "--time-scale",
        "-0.5",
        cwd=sample.parent,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


LOCAL_ESTATE = """\
[estate]
name = "signals"

[[channels]]
name = "dev"
max_parallel = 3

[executors.shell]
kind = "local"
apply = "echo $$ > {target}.pid; sleep 60 & echo $! > {target}.child; echo ready; wait"

[modules.op]
versions = ["1.0", "2.0"]
initial = "1.0"

[targets.t1]
channel = "dev"
executor = "shell"

[targets.t2]
channel = "dev"
executor = "shell"

[targets.t3]
channel = "dev"
executor = "shell"

[targets.t4]
channel = "dev"
executor = "shell"
"""


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_run_aborts_with_3_and_stops_the_applies(tmp_path, sig):
    estate = tmp_path / "estate.toml"
    estate.write_text(LOCAL_ESTATE)
    process = subprocess.Popen(
        [sys.executable, "-m", "sluice.cli", "run", str(estate), "op@2.0", "--headless", "--json"],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pids: list[int] = []
    try:
        ready: set[str] = set()
        assert process.stdout is not None
        for line in process.stdout:  # the process's own output says when the applies run
            event = json.loads(line)
            if event["kind"] == "apply_output" and event["line"] == "ready":
                ready.add(event["target"])
            if len(ready) == 3:
                break
        assert ready == {"t1", "t2", "t3"}
        for target in sorted(ready):
            for kind in ("pid", "child"):
                pids.append(int((tmp_path / f"{target}.{kind}").read_text()))
        assert not any(_gone(pid) for pid in pids)

        process.send_signal(sig)
        rest, errors = process.communicate(timeout=20)
        assert process.returncode == 3, errors
        events = [json.loads(line) for line in rest.splitlines()]
        finished = [e for e in events if e["kind"] == "apply_finished"]
        assert sorted(e["target"] for e in finished) == ["t1", "t2", "t3"]
        assert {e["outcome"] for e in finished} == {"aborted"}
        assert events[-1]["kind"] == "rollout_finished"
        assert events[-1]["summary"].endswith(f"{sig.name} received")
        abort = [e for e in events if e["kind"] == "operator"]
        assert [a["action"] for a in abort] == ["abort"]

        deadline = time.monotonic() + 10
        while not all(_gone(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [pid for pid in pids if not _gone(pid)] == []
        assert not (tmp_path / "t4.pid").exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in pids:
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)


STUBBORN_ESTATE = """\
[estate]
name = "stubborn"

[[channels]]
name = "dev"

[executors.shell]
kind = "local"
stop_grace = "10m"
apply = "echo $$ > {target}.pid; trap 'echo stopping; while :; do sleep 0.05; done' TERM; echo ready; while :; do sleep 0.05; done"

[modules.op]
versions = ["1.0", "2.0"]
initial = "1.0"

[targets.t1]
channel = "dev"
executor = "shell"
"""


@pytest.mark.timeout(90)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_while_the_applies_stop_kills_them_at_once(tmp_path, sig):
    """The first signal stops the apply gracefully (it traps SIGTERM and takes its 10-minute
    grace); the second one escalates: SIGKILL now, the rollout ends aborted (exit 3)."""
    estate = tmp_path / "estate.toml"
    estate.write_text(STUBBORN_ESTATE)
    process = subprocess.Popen(
        [sys.executable, "-m", "sluice.cli", "run", str(estate), "op@2.0", "--headless", "--json"],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        seen: list[dict] = []

        def read_until(line_text: str) -> None:
            for line in process.stdout:  # type: ignore[union-attr]
                seen.append(json.loads(line))
                if seen[-1]["kind"] == "apply_output" and seen[-1]["line"] == line_text:
                    return
            raise AssertionError(f"sluice ended before printing {line_text!r}")

        read_until("ready")
        pid = int((tmp_path / "t1.pid").read_text())
        process.send_signal(sig)
        read_until("stopping")  # the apply got SIGTERM and is cleaning up, for 10 minutes
        assert process.poll() is None
        process.send_signal(sig)  # the second one: SIGKILL at once
        rest, errors = process.communicate(timeout=30)
        assert process.returncode == 3, errors
        events = seen + [json.loads(line) for line in rest.splitlines()]
        operator = [e for e in events if e["kind"] == "operator"]
        assert [e["action"] for e in operator] == ["abort", "abort"]
        assert "SIGKILL at once" in operator[1]["reason"]
        finished = [e for e in events if e["kind"] == "apply_finished"]
        assert [(e["target"], e["outcome"]) for e in finished] == [("t1", "aborted")]
        deadline = time.monotonic() + 10
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(pid)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
