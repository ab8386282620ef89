"""The kill -9 / resume scenario both executors are tested with: applies a killed sluice left running.

Each target's apply logs ``start TARGET PID``, loops until its ``release-TARGET`` file exists, then
logs ``end TARGET PID``. The driver is killed while both applies loop; the resume must say it waits
for them and start nothing until each orphan has ended. Used by test_crash_resume.py (local
executor) and integration/test_ssh_executor.py (ssh executor, real sshd).
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

TARGETS = ("a", "b")


def apply_command(directory: Path) -> str:
    """The apply template (``{target}`` left for sluice to fill) logging to ``directory``."""
    return (
        f"echo start {{target}} $$ >> {directory}/runs.log; "
        f"while [ ! -e {directory}/release-{{target}} ]; do sleep 0.05; done; "
        f"echo end {{target}} $$ >> {directory}/runs.log"
    )


def estate_name() -> str:
    """A marker no other run's leftovers carry."""
    return f"orphans-{time.time_ns()}"


class OrphanRuns:
    """The log and release files of the scenario in ``directory``."""

    def __init__(self, directory: Path):
        self.directory = directory

    def lines(self) -> list[str]:
        log = self.directory / "runs.log"
        return log.read_text().splitlines() if log.exists() else []

    def release(self, *targets: str) -> None:
        for target in targets or TARGETS:
            (self.directory / f"release-{target}").touch()

    def wait_for(
        self, condition: Callable[[], bool], what: str, proc: subprocess.Popen[str]
    ) -> None:
        deadline = time.monotonic() + 60
        while not condition():
            assert proc.poll() is None, f"sluice ended before {what}"
            assert time.monotonic() < deadline, f"gave up waiting for {what}: {self.lines()}"
            time.sleep(0.02)

    def kill_mid_apply_then_resume(
        self,
        driver: subprocess.Popen[str],
        resume: Callable[[], subprocess.Popen[str]],
        alive: Callable[[int], bool],
    ) -> None:
        """Kill ``driver`` while both applies run, then run ``resume()`` (NDJSON on its stdout)
        to its end and check the runs of each target never overlapped."""
        try:
            self.wait_for(lambda: len(self.lines()) == 2, "both applies to start", driver)
        except AssertionError:
            driver.kill()
            self.release()
            raise
        driver.kill()
        driver.communicate(timeout=60)
        orphans = {line.split()[1]: int(line.split()[2]) for line in self.lines()}
        assert all(alive(pid) for pid in orphans.values())  # the kill left them running

        resuming = resume()
        printed: list[str] = []
        reader = threading.Thread(target=lambda: printed.extend(resuming.stdout or ()), daemon=True)
        reader.start()
        try:
            # The resume finds both orphans and says it waits: then give it every chance to
            # (wrongly) start a second run before the orphans end.
            self.wait_for(
                lambda: sum("left running by a sluice" in line for line in printed) == 2,
                "the resume to say it waits for both earlier applies",
                resuming,
            )
            assert len(self.lines()) == 2  # nothing started while the orphans run
            self.release("a")
            self.wait_for(
                lambda: len(self.lines()) >= 4,
                "a's orphan to end and a to be applied again",
                resuming,
            )
            self.release("b")
            resuming.wait(timeout=120)
            reader.join(timeout=30)
        finally:
            if resuming.poll() is None:
                resuming.kill()
            self.release()  # whatever happened, no apply is left looping
            deadline = time.monotonic() + 30
            while any(alive(pid) for pid in orphans.values()) and time.monotonic() < deadline:
                time.sleep(0.05)
        assert resuming.returncode == 0, "".join(printed)[-3000:]
        runs: dict[str, list[tuple[str, str]]] = {}
        for line in self.lines():
            what, target, pid = line.split()
            runs.setdefault(target, []).append((what, pid))
        assert set(runs) == set(TARGETS)
        for target, events in runs.items():
            # Two runs of each target, one after the other: the orphan's end before the new start.
            assert [what for what, _ in events] == ["start", "end", "start", "end"], (
                target,
                events,
            )
            assert events[0][1] == events[1][1] == str(orphans[target])
            assert events[2][1] != str(orphans[target])
