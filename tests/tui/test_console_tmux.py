"""A real terminal: tmux runs ``sluice sample_estate.toml``; keys start a rollout; the screen moves.

CI must run this (``.ci/run`` installs tmux); a developer without tmux gets a skip with the reason.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPARK = set("▁▂▃▄▅▆▇█")


class Tmux:
    """One private tmux server (``-L``), killed at the end."""

    def __init__(self) -> None:
        self.name = f"sluice-smoke-{uuid.uuid4().hex[:8]}"

    def run(self, *args: str) -> str:
        result = subprocess.run(
            ["tmux", "-L", self.name, *args], capture_output=True, text=True, timeout=10
        )
        return result.stdout

    def start(self, command: str, width: int = 120, height: int = 40) -> None:
        self.run("new-session", "-d", "-x", str(width), "-y", str(height), command)

    def screen(self) -> str:
        return self.run("capture-pane", "-p")

    def keys(self, *keys: str) -> None:
        self.run("send-keys", *keys)

    def wait_for(self, predicate: Callable[[str], bool], what: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if predicate(screen):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; the screen was:\n{screen}")

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.name, "kill-server"], capture_output=True, timeout=10)


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        if os.environ.get("CI"):
            pytest.fail("tmux is not installed (CI must run the terminal smoke test)")
        pytest.skip("tmux is not installed")
    server = Tmux()
    try:
        yield server
    finally:
        server.kill()


def _region(screen: str, top: int, bottom: int, left: int, right: int) -> str:
    return "\n".join(line[left:right] for line in screen.splitlines()[top:bottom])


@pytest.mark.timeout(180)
def test_console_in_a_real_terminal(tmux: Tmux, tmp_path: Path) -> None:
    estate = tmp_path / "sample_estate.toml"
    shutil.copy(ROOT / "sample_estate.toml", estate)
    command = shlex.join([sys.executable, "-m", "sluice.cli", str(estate), "--time-scale", "0.05"])
    tmux.start(f"cd {shlex.quote(str(ROOT))} && {command}")

    tmux.wait_for(lambda s: "eph-101" in s and "1.12.0" in s, "the estate tree")
    tmux.keys("n")
    tmux.wait_for(lambda s: "New rollout" in s and "production 3/3" in s, "the plan preview")
    tmux.keys("s")

    first = tmux.wait_for(lambda s: "RUNNING" in s and "✓ eph-" in s, "targets turning green")
    assert "W1 ephemeral 1/1" in first  # the wave rows
    later = tmux.wait_for(lambda s: "W2 dev 1/1" in s and "%" in s and s != first, "updates")
    assert later != first

    # The metrics pane (right) draws sparklines for the current wave.
    tmux.wait_for(
        lambda s: SPARK & set(_region(s, 1, 28, 84, 120)) != set(), "sparklines", timeout=60
    )
    # 2.0.0 regresses p99 latency in dev: the gate halts, and says why.
    halted = tmux.wait_for(
        lambda s: "HALTED" in s and "gate FAILED" in s, "the dev gate halting", 90
    )
    assert "p99_latency" in halted
    assert "✗" in _region(halted, 1, 28, 84, 120)  # failed measurements counted in metrics

    # The estate matrix (m), and from it a target's detail (enter): the ledger, the charts.
    tmux.keys("m")
    matrix = tmux.wait_for(lambda s: "estate matrix · acme-platform" in s, "the estate matrix")
    assert "pgbouncer" in matrix and "● 2.0.0" in matrix
    tmux.keys("Enter")
    detail = tmux.wait_for(
        lambda s: "target eph-101 · channel ephemeral" in s and "p99_latency" in s,
        "the target detail",
    )
    assert "ledger" in detail and "last apply: #1 apply 1.12.0 → 2.0.0" in detail
    tmux.keys("Escape")
    # Each Escape is seen handled before the next key: sent together they read as alt+key.
    tmux.wait_for(lambda s: "estate matrix" in s, "back to the matrix")
    tmux.keys("Escape")
    tmux.wait_for(lambda s: "HALTED" in s and "estate matrix" not in s, "back to the console")
    # Opened again, the (reused) matrix is painted afresh: the rollout's cells are there.
    tmux.keys("m")
    again = tmux.wait_for(lambda s: "estate matrix · acme-platform" in s, "the matrix again")
    assert "● 2.0.0" in again and "● in the running rollout 36" in again
    tmux.keys("Escape")
    tmux.wait_for(lambda s: "HALTED" in s and "estate matrix" not in s, "back to the console")

    tmux.keys("q")
    tmux.wait_for(lambda s: "Quit while a rollout runs?" in s, "the quit confirmation")
    tmux.keys("y")
    tmux.wait_for(lambda s: "eph-101" not in s, "the console to exit", timeout=30)
