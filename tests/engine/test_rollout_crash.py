"""A failure inside the engine ends the rollout ``crashed`` on the event stream — never a hang,
never a silent RUNNING — with where the traceback went, and resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rollout_helpers import SIM, build_estate, channel, make_rollout, members

from sluice.engine.executors.base import create_executor
from sluice.engine.rollout.events import Event, Notice, RolloutFinished
from sluice.engine.rollout.orchestrator import describe_failure
from sluice.engine.rollout.state import RESUMABLE, ExitCode

pytestmark = pytest.mark.timeout(30)


class Defective:
    def __init__(self, spec: Any, estate: Any, clock: Any, resources: Any):
        self.inner = create_executor(spec, estate, clock, resources)

    def describe(self, job: Any) -> str:
        raise KeyError("no such field")

    async def apply(self, job: Any, output: Any) -> Any:
        return await self.inner.apply(job, output)

    async def close(self) -> None:
        await self.inner.close()


async def test_an_engine_failure_ends_the_rollout_crashed(tmp_path: Path) -> None:
    estate = build_estate(
        tmp_path,
        channels=[channel("dev")],
        targets=members("dev", 2),
        executors={"sim": SIM},
    )
    rollout = make_rollout(estate, executor_factory=Defective)
    crashes: list[BaseException] = []
    rollout.on_crash = lambda exc: crashes.append(exc) or "/var/log/here.log"
    events: list[Event] = []
    rollout.bus.listen(events.append)
    outcome = await rollout.run()
    assert outcome.outcome == "crashed" and outcome.outcome in RESUMABLE
    assert outcome.exit_code == ExitCode.STOPPED
    assert len(crashes) == 1
    notices = [e for e in events if isinstance(e, Notice) and e.level == "error"]
    assert notices and "KeyError: 'no such field'" in notices[0].message
    assert "/var/log/here.log" in notices[0].message
    (finished,) = [e for e in events if isinstance(e, RolloutFinished)]
    assert finished.outcome == "crashed" and "sluice resume" in finished.summary
    assert rollout.state == "crashed"


def test_a_failure_in_a_task_group_is_described_by_its_first_error() -> None:
    group = ExceptionGroup("unhandled errors", [ValueError("bad"), OSError("worse")])
    assert describe_failure(group) == "ValueError: bad (and 1 more)"
    assert describe_failure(RuntimeError()) == "RuntimeError"
