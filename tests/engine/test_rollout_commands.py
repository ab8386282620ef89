"""Operator commands on a running rollout: advance, pause/resume, abort, rollback, retry, bypass,
and the refusals when a command makes no sense now."""

from __future__ import annotations

import asyncio

import pytest
from rollout_helpers import (
    Events,
    HeldExecutor,
    build_estate,
    channel,
    is_state,
    kill_leftovers,
    make_rollout,
    members,
    of_kind,
    read_pids,
    scripted,
    start,
    wait_gone,
)

from sluice.engine.checks.base import Reading
from sluice.engine.executors.base import ApplyResult, Job, OutputSink
from sluice.engine.rollout.events import (
    ApplyFinished,
    ApplyOutput,
    ApplyStarted,
    GateEvaluated,
    OperatorAction,
    RolloutFinished,
    SampleTaken,
    SoakStarted,
    StateChanged,
    WaveFinished,
    WaveStarted,
)
from sluice.engine.rollout.state import ABORTED, FAILED, OK, PENDING, ROLLED_BACK, CommandResult
from sluice.engine.support.clock import Clock

HEALTHY = scripted(lambda ctx, n, base: Reading(0.1))
CHECKS = {"lat": {"source": "simulated", "metric": "p99_latency", "max": 0.25, "interval": "1s"}}


def two_channels(tmp_path, *, dev=2, prod=2, executors=None, **dev_settings):
    dev_settings.setdefault("soak", "3s")
    return build_estate(
        tmp_path,
        channels=[channel("dev", checks=["lat"], **dev_settings), channel("prod")],
        targets={**members("dev", dev), **members("prod", prod)},
        executors=executors,
        checks=CHECKS,
    )


def refused(result: CommandResult, *words: str) -> None:
    assert isinstance(result, CommandResult)
    assert result.ok is False, result
    for word in words:
        assert word in result.message, result.message


class FlakyExecutor:
    """Fails each target in ``flaky`` on its first apply, succeeds after."""

    def __init__(self, flaky: set[str]):
        self.flaky = set(flaky)
        self.jobs: list[tuple[str, str]] = []

    def describe(self, job: Job) -> str:
        return f"flaky {job.action} {job.target}"

    async def apply(self, job: Job, output: OutputSink) -> ApplyResult:
        self.jobs.append((job.target, job.action))
        await asyncio.sleep(0)
        if job.target in self.flaky:
            self.flaky.discard(job.target)
            return ApplyResult(False, "transient: lock held", 1)
        return ApplyResult(True)

    async def close(self) -> None:
        return None


# ---------------------------------------------------------------------------------- advance


@pytest.mark.timeout(30)
async def test_manual_gate_waits_for_advance(tmp_path):
    estate = two_channels(tmp_path, gate="manual")
    rollout = make_rollout(estate, interactive=True, check_factory=HEALTHY)
    events = Events(rollout)
    task = start(rollout)

    waiting = await events.first(is_state("awaiting_approval"))
    assert waiting.wave == 1
    assert rollout.state == "awaiting_approval"
    assert events.of(WaveStarted, wave=2) == []
    result = rollout.advance(reason="looks good", actor="alice")
    assert result == CommandResult(True, "wave 1 approved")

    outcome = await asyncio.wait_for(task, 10)
    assert outcome.outcome == "done"
    assert events.of(WaveFinished, wave=1)[0].outcome == "approved"
    (approval,) = events.of(OperatorAction, action="approve")
    assert (approval.actor, approval.reason, approval.wave) == ("alice", "looks good", 1)
    assert approval.seq < events.of(WaveStarted, wave=2)[0].seq


@pytest.mark.timeout(30)
async def test_advance_from_a_synchronous_listener_approves(tmp_path):
    """A listener (called inline by the bus) may approve the moment the gate says it waits."""
    estate = two_channels(tmp_path, gate="manual")
    rollout = make_rollout(estate, interactive=True, check_factory=HEALTHY)
    results: list[CommandResult] = []

    def approve(event):
        if isinstance(event, StateChanged) and event.state == "awaiting_approval":
            results.append(rollout.advance(actor="bot"))

    rollout.bus.listen(approve)
    outcome = await asyncio.wait_for(rollout.run(), 10)
    assert results == [CommandResult(True, "wave 1 approved")]
    assert outcome.outcome == "done"


@pytest.mark.timeout(30)
async def test_a_second_advance_of_the_same_gate_is_refused_not_raised(tmp_path):
    estate = two_channels(tmp_path, gate="manual")
    rollout = make_rollout(estate, interactive=True, check_factory=HEALTHY)
    events = Events(rollout)
    task = start(rollout)
    await events.first(is_state("awaiting_approval"))
    assert rollout.advance().ok
    refused(rollout.advance(), "nothing to advance")
    refused(rollout.bypass("too late"), "no gate")
    assert (await asyncio.wait_for(task, 10)).outcome == "done"
    assert len(events.of(OperatorAction, action="approve")) == 1
    assert events.of(OperatorAction, action="bypass") == []


@pytest.mark.timeout(30)
async def test_advance_ends_a_soak_early_and_judges_what_was_measured(tmp_path):
    # A one-hour soak measured every second (10 ms real): only advance ends it in time.
    estate = two_channels(tmp_path, soak="1h")
    rollout = make_rollout(estate, interactive=True, clock=Clock(0.01), check_factory=HEALTHY)
    events = Events(rollout)
    task = start(rollout)
    for target in ("dev-1", "dev-2"):
        await events.first(of_kind(SampleTaken, phase="soak", target=target))
    assert rollout.state == "soaking"
    result = rollout.advance(actor="alice")
    assert result.ok and "soak ended early" in result.message

    gate = await events.first(of_kind(GateEvaluated, wave=1))
    assert (gate.verdict, gate.early) == ("passed", True)
    (action,) = events.of(OperatorAction, action="advance")
    assert (action.reason, action.wave) == ("soak ended early", 1)
    assert (await asyncio.wait_for(task, 10)).outcome == "done"


@pytest.mark.timeout(30)
async def test_an_inconclusive_gate_waits_for_the_operator_then_advance_continues(tmp_path):
    estate = two_channels(tmp_path)
    no_data = scripted(lambda ctx, n, base: Reading(None))
    rollout = make_rollout(estate, interactive=True, check_factory=no_data)
    events = Events(rollout)
    task = start(rollout)
    waiting = await events.first(is_state("inconclusive"))
    assert "approve or bypass" in waiting.detail
    assert rollout.advance(reason="dashboards were down; checked by hand").ok
    assert (await asyncio.wait_for(task, 10)).outcome == "done"
    assert events.of(WaveFinished, wave=1)[0].outcome == "approved"
    assert events.of(OperatorAction, action="advance")[0].wave == 1


# ---------------------------------------------------------------------------------- pause


@pytest.mark.timeout(30)
async def test_pause_mid_wave_holds_new_applies_and_resume_releases_them(tmp_path):
    estate = build_estate(
        tmp_path, channels=[channel("dev", max_parallel=2)], targets=members("dev", 5)
    )
    held = HeldExecutor()
    rollout = make_rollout(estate, interactive=True, executor_factory=lambda *a: held)
    events = Events(rollout)
    task = start(rollout)

    await events.first(of_kind(ApplyStarted, target="dev-2"))
    result = rollout.pause(reason="lunch", actor="alice")
    assert result.ok and "in-flight applies finish" in result.message
    assert rollout.state == "paused" and rollout.paused

    # In-flight applies finish …
    held.release()
    for target in ("dev-1", "dev-2"):
        finished = await events.first(of_kind(ApplyFinished, target=target))
        assert finished.outcome == "ok"
    # … but nothing new starts while paused (a freed slot would start the next target in the
    # same step that finished the last one, so by now it would have).
    assert held.started == ["dev-1", "dev-2"]
    assert [rollout.targets[f"dev-{i}"].status for i in (3, 4, 5)] == [PENDING] * 3
    assert len(events.of(ApplyStarted)) == 2
    assert not task.done()

    assert rollout.resume(actor="alice").ok
    assert rollout.state == "running"
    outcome = await asyncio.wait_for(task, 10)
    assert outcome.outcome == "done"
    assert sorted(held.started) == [f"dev-{i}" for i in range(1, 6)]
    pause = events.of(OperatorAction, action="pause")[0]
    resume = events.of(OperatorAction, action="resume")[0]
    assert (pause.actor, pause.reason) == ("alice", "lunch")
    # Every apply started after the resume was recorded after it.
    late = [e for e in events.of(ApplyStarted) if e.target in ("dev-3", "dev-4", "dev-5")]
    assert all(e.seq > resume.seq for e in late)


@pytest.mark.timeout(30)
async def test_pause_holds_the_automatic_advance_to_the_next_wave(tmp_path):
    estate = two_channels(tmp_path)
    rollout = make_rollout(estate, interactive=True, check_factory=HEALTHY)
    events = Events(rollout)
    paused: list[CommandResult] = []
    # Paused from a listener the moment the soak starts (inline: no race with Clock(0)).
    rollout.bus.listen(
        lambda e: isinstance(e, SoakStarted) and e.wave == 1 and paused.append(rollout.pause())
    )
    task = start(rollout)
    await events.first(of_kind(WaveFinished, wave=1))
    assert paused == [CommandResult(True, "paused: in-flight applies finish, no new ones start")]
    # Soak and gate went on while paused; the next wave waits.
    assert events.of(GateEvaluated, wave=1)[0].verdict == "passed"
    assert events.of(WaveStarted, wave=2) == []
    assert rollout.state == "paused" and not task.done()
    assert rollout.resume().ok
    assert (await asyncio.wait_for(task, 10)).outcome == "done"


# ---------------------------------------------------------------------------------- abort


@pytest.mark.timeout(30)
async def test_abort_during_applies_leaves_no_process_alive(tmp_path):
    estate = build_estate(
        tmp_path,
        channels=[channel("dev", max_parallel=3)],
        targets=members("dev", 5, executor="shell"),
        executors={
            "shell": {
                "kind": "local",
                "apply": "echo $$ > {target}.pid; sleep 30 & echo $! > {target}.child; "
                "echo ready; wait",
            }
        },
    )
    rollout = make_rollout(estate, interactive=True, clock=Clock(1))
    events = Events(rollout)
    task = start(rollout)
    in_flight = ["dev-1", "dev-2", "dev-3"]
    for target in in_flight:
        await events.first(of_kind(ApplyOutput, target=target, line="ready"))
    pids = read_pids(tmp_path / f"{t}.{kind}" for t in in_flight for kind in ("pid", "child"))
    try:
        assert await wait_gone(pids, deadline=0) == pids  # all running
        result = rollout.abort(reason="wrong version", actor="alice")
        assert result.ok
        refused(rollout.abort(), "already aborting")
        outcome = await asyncio.wait_for(task, 15)
        assert (outcome.outcome, outcome.exit_code) == ("aborted", 3)
        assert outcome.summary == "aborted by alice: wrong version"
        assert await wait_gone(pids, deadline=10) == []
    finally:
        kill_leftovers(pids)
    assert [rollout.targets[t].status for t in in_flight] == [ABORTED] * 3
    assert {e.outcome for e in events.of(ApplyFinished)} == {"aborted"}
    assert [rollout.targets[t].status for t in ("dev-4", "dev-5")] == [PENDING, PENDING]
    assert not (tmp_path / "dev-4.pid").exists()
    assert isinstance(events.all[-1], RolloutFinished)
    refused(rollout.pause(), "no rollout is running")


@pytest.mark.timeout(30)
async def test_abort_while_waiting_at_a_gate(tmp_path):
    estate = two_channels(tmp_path, gate="manual")
    rollout = make_rollout(estate, interactive=True, check_factory=HEALTHY)
    events = Events(rollout)
    task = start(rollout)
    await events.first(is_state("awaiting_approval"))
    assert rollout.abort().ok
    outcome = await asyncio.wait_for(task, 10)
    assert outcome.outcome == "aborted"
    assert events.of(StateChanged)[-1].state == "aborted"


# ---------------------------------------------------------------------------------- rollback

VERSION_FILE = {
    "kind": "local",
    "apply": "printf %s {version} > {target}.version",
    "rollback": "printf %s {version} > {target}.version; echo back from {previous_version}",
}


def versions(tmp_path, names):
    return {n: (tmp_path / f"{n}.version").read_text() for n in names}


@pytest.mark.timeout(30)
async def test_rollback_of_a_wave_restores_previous_versions(tmp_path):
    estate = build_estate(
        tmp_path,
        channels=[
            channel("dev", checks=["lat"], soak="3s", gate="manual", max_parallel=2),
            channel("prod"),
        ],
        targets={**members("dev", 3, executor="shell"), **members("prod", 1, executor="shell")},
        executors={"shell": VERSION_FILE},
        checks=CHECKS,
    )
    rollout = make_rollout(estate, interactive=True, check_factory=HEALTHY)
    events = Events(rollout)
    task = start(rollout)
    await events.first(is_state("awaiting_approval"))
    dev = ["dev-1", "dev-2", "dev-3"]
    assert versions(tmp_path, dev) == dict.fromkeys(dev, "2.0")

    result = rollout.rollback_wave(1, reason="latency", actor="alice")
    assert result.ok and "3 targets" in result.message
    done = await events.first(of_kind(WaveFinished, wave=1, outcome="rolled_back"))
    assert versions(tmp_path, dev) == dict.fromkeys(dev, "1.0")
    assert [(rollout.targets[t].status, rollout.targets[t].version) for t in dev] == [
        (ROLLED_BACK, "1.0")
    ] * 3
    rollbacks = [e for e in events.of(ApplyStarted) if e.action == "rollback"]
    assert sorted(e.target for e in rollbacks) == dev
    assert all((e.version, e.from_version) == ("1.0", "2.0") for e in rollbacks)
    outputs = [e.line for e in events.of(ApplyOutput) if e.line.startswith("back from")]
    assert outputs == ["back from 2.0"] * 3
    assert done.seq > max(e.seq for e in rollbacks)
    assert not (tmp_path / "prod-1.version").exists()
    # There is nothing left to roll back in that wave.
    refused(rollout.rollback_wave(1), "nothing to roll back")
    assert rollout.abort().ok
    assert (await asyncio.wait_for(task, 10)).outcome == "aborted"


@pytest.mark.timeout(30)
async def test_rollback_of_one_target_restores_only_it(tmp_path):
    estate = build_estate(
        tmp_path,
        channels=[channel("dev", checks=["lat"], soak="3s", gate="manual"), channel("prod")],
        targets={**members("dev", 2, executor="shell"), **members("prod", 1, executor="shell")},
        executors={"shell": VERSION_FILE},
        checks=CHECKS,
    )
    rollout = make_rollout(estate, interactive=True, check_factory=HEALTHY)
    events = Events(rollout)
    task = start(rollout)
    await events.first(is_state("awaiting_approval"))
    result = rollout.rollback_target("dev-2", reason="canary only", actor="alice")
    assert result == CommandResult(True, "rolling back dev-2 to 1.0")
    finished = await events.first(of_kind(ApplyFinished, target="dev-2", action="rollback"))
    assert finished.outcome == "ok"
    assert versions(tmp_path, ["dev-1", "dev-2"]) == {"dev-1": "2.0", "dev-2": "1.0"}
    assert rollout.targets["dev-2"].status == ROLLED_BACK
    assert rollout.targets["dev-1"].status == OK
    action = events.of(OperatorAction, action="rollback")[0]
    assert (action.target, action.wave, action.reason) == ("dev-2", 1, "canary only")
    refused(rollout.rollback_target("dev-2"), "nothing to roll back")
    assert rollout.advance().ok
    assert (await asyncio.wait_for(task, 10)).outcome == "done"
    assert (tmp_path / "prod-1.version").read_text() == "2.0"


# ---------------------------------------------------------------------------------- retry


@pytest.mark.timeout(30)
async def test_retry_of_a_failed_target_then_advance_past_the_budget_halt(tmp_path):
    estate = two_channels(tmp_path, dev=3)
    flaky = FlakyExecutor({"dev-2"})
    rollout = make_rollout(
        estate, interactive=True, executor_factory=lambda *a: flaky, check_factory=HEALTHY
    )
    events = Events(rollout)
    task = start(rollout)
    halted = await events.first(is_state("halted"))
    assert "1 failed (budget 0)" in halted.detail
    assert rollout.targets["dev-2"].status == FAILED
    assert rollout.targets["dev-2"].reason == "transient: lock held"
    refused(rollout.advance(), "1 failed (budget 0)", "retry")
    refused(rollout.retry("dev-1"), "dev-1 is ok, not failed")
    refused(rollout.retry("nope"), "unknown target")

    assert rollout.retry("dev-2", reason="lock released", actor="alice").ok
    retried = await events.first(of_kind(ApplyFinished, target="dev-2", action="retry"))
    assert retried.outcome == "ok"
    assert rollout.targets["dev-2"].status == OK
    assert rollout.targets["dev-2"].attempts == 2
    result = rollout.advance(actor="alice")
    assert result.ok and "within budget" in result.message
    assert (await asyncio.wait_for(task, 10)).outcome == "done"
    assert flaky.jobs.count(("dev-2", "apply")) == 2
    assert events.of(OperatorAction, action="retry")[0].target == "dev-2"


# ---------------------------------------------------------------------------------- bypass


@pytest.mark.timeout(30)
async def test_bypass_needs_a_reason_and_skips_a_failed_gate(tmp_path):
    estate = two_channels(tmp_path)
    failing = scripted(lambda ctx, n, base: Reading(0.1 if base else 0.9))
    rollout = make_rollout(estate, interactive=True, check_factory=failing)
    events = Events(rollout)
    task = start(rollout)
    halted = await events.first(is_state("halted"))
    assert halted.detail == "gate failed"
    refused(rollout.advance(), "bypass (with a reason)")
    refused(rollout.bypass(""), "bypass needs a reason")
    refused(rollout.bypass("   "), "bypass needs a reason")
    assert events.of(OperatorAction, action="bypass") == []
    assert not task.done()

    assert rollout.bypass("CVE-2024-0001 fix must ship", actor="alice").ok
    outcome = await asyncio.wait_for(task, 10)
    assert outcome.outcome == "done"
    assert events.of(WaveFinished, wave=1)[0].outcome == "bypassed"
    (bypass,) = events.of(OperatorAction, action="bypass")
    assert (bypass.actor, bypass.reason, bypass.wave) == ("alice", "CVE-2024-0001 fix must ship", 1)


@pytest.mark.timeout(30)
async def test_bypass_during_a_soak_skips_the_gate(tmp_path):
    estate = two_channels(tmp_path, soak="1h")
    rollout = make_rollout(estate, interactive=True, clock=Clock(0.01), check_factory=HEALTHY)
    events = Events(rollout)
    task = start(rollout)
    await events.first(is_state("soaking"))
    assert rollout.bypass("emergency").ok
    gate = await events.first(of_kind(GateEvaluated, wave=1))
    assert gate.verdict == "bypassed"
    assert (await asyncio.wait_for(task, 10)).outcome == "done"


# ---------------------------------------------------------------------------------- refusals


@pytest.mark.timeout(30)
async def test_commands_in_the_wrong_state_are_refused_with_a_reason(tmp_path):
    estate = build_estate(
        tmp_path,
        channels=[channel("dev", max_parallel=1), channel("prod")],
        targets={**members("dev", 2), **members("prod", 1)},
    )
    held = HeldExecutor()
    rollout = make_rollout(estate, interactive=True, executor_factory=lambda *a: held)
    events = Events(rollout)

    # Before it runs.
    for result in (
        rollout.pause(),
        rollout.resume(),
        rollout.advance(),
        rollout.abort(),
        rollout.bypass("why"),
        rollout.rollback_wave(1),
    ):
        refused(result, "no rollout is running")

    task = start(rollout)
    await events.first(of_kind(ApplyStarted, target="dev-1"))
    refused(rollout.advance(), "nothing to advance")
    refused(rollout.resume(), "not paused")
    refused(rollout.bypass("why"), "no gate to bypass")
    refused(rollout.retry("dev-1"), "dev-1 is applying, not failed")
    refused(rollout.retry("prod-1"), "prod-1 is pending")
    refused(rollout.rollback_wave(1), "wave 1 is applying")
    refused(rollout.rollback_wave(2), "wave 2 is pending")
    refused(rollout.rollback_wave(9), "there is no wave 9")
    refused(rollout.rollback_target("prod-1"), "nothing to roll back")
    refused(rollout.rollback_target("ghost"), "unknown target")
    assert rollout.pause().ok
    refused(rollout.pause(), "already paused")
    assert rollout.resume().ok
    held.release()
    outcome = await asyncio.wait_for(task, 10)
    assert outcome.outcome == "done"

    # After the end.
    for result in (
        rollout.pause(),
        rollout.resume(),
        rollout.advance(),
        rollout.abort(),
        rollout.retry("dev-1"),
        rollout.rollback_wave(1),
        rollout.rollback_target("dev-1"),
        rollout.bypass("why"),
    ):
        refused(result)
    assert rollout.advance().message == "no rollout is running"
    assert [e.action for e in events.of(OperatorAction)] == ["pause", "resume"]


class SlowRollbacks:
    """Applies succeed at once; rollbacks wait until ``release``."""

    def __init__(self):
        self.gate = asyncio.Event()

    def describe(self, job: Job) -> str:
        return f"{job.action} {job.target}"

    async def apply(self, job: Job, output: OutputSink) -> ApplyResult:
        if job.action == "rollback":
            await self.gate.wait()
        return ApplyResult(True)

    async def close(self) -> None:
        return None


@pytest.mark.timeout(30)
async def test_a_rollback_ending_late_does_not_rewind_the_rollout_state(tmp_path):
    """Rollback started at a gate, gate approved meanwhile: the rollout's state moves on."""
    estate = build_estate(
        tmp_path,
        channels=[
            channel("dev", checks=["lat"], gate="manual"),
            channel("prod", checks=["lat"], soak="1h"),
        ],
        targets={**members("dev", 2), **members("prod", 2)},
        checks=CHECKS,
    )
    slow = SlowRollbacks()
    rollout = make_rollout(
        estate,
        interactive=True,
        clock=Clock(0.01),
        executor_factory=lambda *a: slow,
        check_factory=HEALTHY,
    )
    events = Events(rollout)
    task = start(rollout)
    await events.first(is_state("awaiting_approval"))
    assert rollout.rollback_target("dev-2").ok
    await events.first(is_state("rolling_back"))
    assert rollout.advance().ok  # the operator approves while the rollback runs
    await events.first(of_kind(SampleTaken, wave=2, phase="soak"))
    slow.gate.set()
    await asyncio.gather(*rollout._side_tasks)  # the rollback, to its very end
    assert events.of(ApplyFinished, target="dev-2", action="rollback")[0].outcome == "ok"
    assert rollout.state == "soaking"
    assert rollout.advance().ok  # ends wave 2's soak: the engine knows it is soaking
    assert (await asyncio.wait_for(task, 10)).outcome == "done"
    assert rollout.targets["dev-2"].status == ROLLED_BACK


@pytest.mark.timeout(30)
async def test_on_failure_rollback_in_the_console_rolls_back_then_waits(tmp_path):
    estate = two_channels(tmp_path, on_failure="rollback")
    regressed = scripted(lambda ctx, n, base: Reading(0.9 if ctx.version == "2.0" else 0.1))
    rollout = make_rollout(estate, interactive=True, check_factory=regressed)
    events = Events(rollout)
    task = start(rollout)
    waiting = await events.first(is_state("rolled_back"))
    assert waiting.detail == "gate failed; the wave was rolled back"
    assert [rollout.targets[t].version for t in ("dev-1", "dev-2")] == ["1.0", "1.0"]
    rolling = [e for e in events.of(StateChanged) if e.state == "rolling_back"]
    assert rolling and rolling[0].seq < waiting.seq
    refused(rollout.advance(), "the gate failed")
    refused(rollout.rollback_wave(1), "nothing to roll back")
    assert rollout.bypass("known flaky check, fixed in the next release").ok
    assert (await asyncio.wait_for(task, 10)).outcome == "done"
    assert events.of(WaveFinished, wave=1)[0].outcome == "bypassed"


@pytest.mark.timeout(30)
async def test_retry_waits_for_the_wave_applies_so_max_parallel_holds(tmp_path):
    estate = build_estate(
        tmp_path,
        channels=[channel("dev", max_parallel=1, max_failures=1)],
        targets=members("dev", 3),
    )

    class HoldingDev2(FlakyExecutor):
        """dev-2 holds the only slot until released: dev-1's failure is seen mid-wave."""

        release = asyncio.Event()

        async def apply(self, job: Job, output: OutputSink) -> ApplyResult:
            if job.target == "dev-2":
                await self.release.wait()
            return await super().apply(job, output)

    flaky = HoldingDev2({"dev-1"})
    rollout = make_rollout(estate, interactive=True, executor_factory=lambda *a: flaky)
    events = Events(rollout)
    task = start(rollout)
    await events.first(of_kind(ApplyStarted, target="dev-2"))
    assert rollout.targets["dev-1"].status == FAILED
    refused(rollout.retry("dev-1"), "wave 1 is still applying", "retry dev-1")
    flaky.release.set()
    outcome = await asyncio.wait_for(task, 10)
    assert outcome.outcome == "done"  # 1 failed (budget 1)
    assert events.of(OperatorAction, action="retry") == []
