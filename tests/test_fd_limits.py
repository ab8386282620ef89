"""File-descriptor limits (issue 12, item 9): `check` and `plan` warn when a channel's
max_parallel cannot fit RLIMIT_NOFILE, and `run` fails closed — one line, exit 2, no apply
started, no rollout recorded — instead of failing half a wave with "Too many open files".
Real processes under a real limit (``setrlimit`` in the child)."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest


def _estate(tmp_path: Path, targets: int, parallel: int) -> Path:
    log = tmp_path / "applies.log"
    text = f"""\
[estate]
name = "fds"

[[channels]]
name = "wide"
max_parallel = {parallel}

[executors.sh]
kind = "local"
apply = "echo {{target}} >> {log}"

[modules.m]
versions = ["1", "2"]
initial = "1"
"""
    text += "".join(
        f'\n[targets.t{i}]\nchannel = "wide"\nexecutor = "sh"\n' for i in range(targets)
    )
    path = tmp_path / "estate.toml"
    path.write_text(text)
    return path


def _limited(soft: int, hard: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return apply


def sluice(*args: object, limit: tuple[int, int]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sluice.cli", *map(str, args)],
        capture_output=True, text=True, timeout=120, preexec_fn=_limited(*limit),
    )  # fmt: skip


def test_check_and_plan_warn_and_run_fails_closed(tmp_path: Path) -> None:
    estate = _estate(tmp_path, targets=300, parallel=300)
    checked = sluice("check", estate, limit=(512, 512))
    assert checked.returncode == 0, checked
    warning = checked.stderr.strip()
    assert len(warning.splitlines()) == 1, checked.stderr
    assert "warning" in warning and "'wide'" in warning and "512" in warning, warning
    assert "max_parallel" in warning, warning
    planned = sluice("plan", estate, "m@2", limit=(512, 512))
    assert planned.returncode == 0, planned
    assert planned.stderr.strip() == warning
    run = sluice("run", estate, "m@2", "--headless", limit=(512, 512))
    assert run.returncode == 2, run
    assert len(run.stderr.splitlines()) == 1 and "Traceback" not in run.stderr, run.stderr
    assert "file descriptors" in run.stderr and "'wide'" in run.stderr, run.stderr
    assert not (tmp_path / "applies.log").exists()  # no apply started
    history = sluice("history", estate, "--json", limit=(512, 512))
    assert '"id"' not in history.stdout  # no rollout recorded


@pytest.mark.timeout(180)
def test_a_low_soft_limit_is_raised_to_the_hard_one(tmp_path: Path) -> None:
    estate = _estate(tmp_path, targets=100, parallel=100)
    checked = sluice("check", estate, limit=(64, 4096))
    assert checked.returncode == 0 and checked.stderr == "", checked
    run = sluice("run", estate, "m@2", "--headless", limit=(64, 4096))
    assert run.returncode == 0, run
    assert len((tmp_path / "applies.log").read_text().splitlines()) == 100
