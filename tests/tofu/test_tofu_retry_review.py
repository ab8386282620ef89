"""A retry (``t``) on a ``review = "plans"`` channel plans again and never applies an unreviewed
plan — against the real Terraform, with the target's state changed between failure and retry."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from tofu_helpers import PROVISIONED, estate_with, wait_for

from sluice.engine.model.plan import make_plan
from sluice.engine.rollout.events import ApplyFinished, OperatorAction, PlansReviewed
from sluice.engine.rollout.orchestrator import Rollout
from sluice.engine.rollout.state import FAILED, OK
from sluice.engine.support.clock import Clock

pytestmark = pytest.mark.timeout(240)

#: The provisioner fails until the file ``ok`` exists; each run that gets past it is counted.
COMMAND = "test -f ok && echo ran >> runs"


def make_estate(root: Path, gate: str = 'gate = "manual"') -> Path:
    estate_with(
        root,
        PROVISIONED,
        settings={"vars": f'{{ v = "{{version}}", command = "{COMMAND}" }}'},
        channel=f'review = "plans"\nmax_failures = 1\n{gate}',
    )
    return root / "estate.toml"


def runs(env: Path) -> int:
    path = env / "runs"
    return len(path.read_text().splitlines()) if path.exists() else 0


def state_version(env: Path) -> str:
    return str(json.loads((env / "terraform.tfstate").read_text())["outputs"]["version"]["value"])


def apply_by_hand(env: Path, version: str) -> None:
    """Someone applies another version outside sluice: the state moves."""
    subprocess.run(
        ["terraform", "apply", "-auto-approve", "-input=false", f"-var=v={version}",
         "-var=command=true"],
        cwd=env, check=True, capture_output=True, timeout=120,
    )  # fmt: skip


def retried(events: list[object]) -> bool:
    return any(isinstance(e, ApplyFinished) and e.action == "retry" for e in events)


def rollout_of(estate_file: Path, **options: bool) -> tuple[Rollout, list[object]]:
    from sluice.engine.model.estate import load_estate
    from sluice.engine.rollout.options import RolloutOptions

    estate = load_estate(estate_file)
    rollout = Rollout(
        estate,
        make_plan(estate, "m", "2"),
        clock=Clock(0),
        actor="t",
        options=RolloutOptions(**options),
    )
    events: list[object] = []
    rollout.bus.listen(events.append)
    return rollout, events


async def fail_first_apply(rollout: Rollout, env: Path) -> None:
    """Approve the wave's reviewed plan; its apply fails (no ``ok`` yet)."""
    await wait_for(lambda: rollout.review is not None, "the wave's plan review", 120)
    assert rollout.advance(actor="alice").ok
    await wait_for(lambda: rollout.targets["t1"].status == FAILED, "the failed apply", 120)
    assert runs(env) == 0


async def test_console_retry_of_a_changed_plan_waits_for_its_own_review(
    terraform: dict[str, str], tmp_path: Path
) -> None:
    import asyncio

    rollout, events = rollout_of(make_estate(tmp_path), interactive=True)
    env = tmp_path / "envs" / "t1"
    task = asyncio.ensure_future(rollout.run())
    try:
        await fail_first_apply(rollout, env)
        apply_by_hand(env, "3")  # the state moved: the retry's plan replaces a v=3 resource
        (env / "ok").write_text("")

        assert rollout.retry("t1", actor="alice").ok
        await wait_for(lambda: rollout.review is not None and rollout.review.pending(), "review")
        review = rollout.review
        assert review is not None and set(review.plans) == {"t1"} and review.destroys
        assert runs(env) == 0 and state_version(env) == "3"  # nothing applied without approval
        assert rollout.targets["t1"].status == FAILED
        assert len([e for e in events if isinstance(e, PlansReviewed)]) == 2

        assert rollout.bypass("not this one", actor="alice").ok  # declined
        await wait_for(lambda: rollout.review is None, "the declined review")
        await wait_for(lambda: "declined" in rollout.targets["t1"].reason, "the decline")
        assert runs(env) == 0 and state_version(env) == "3"

        assert rollout.retry("t1", actor="alice").ok  # again: a new review, approved this time
        await wait_for(lambda: rollout.review is not None and rollout.review.pending(), "review")
        hashes = rollout.review.hashes()
        assert rollout.advance(actor="alice").message == "the retry's new plan approved"
        await wait_for(lambda: retried(events), "the approved retry", 120)
        assert rollout.targets["t1"].status == OK, rollout.targets["t1"].reason
        assert runs(env) == 1 and state_version(env) == "2"
        approvals = [
            e for e in events if isinstance(e, OperatorAction) and e.action == "approve_plans"
        ]
        assert [a.reason for a in approvals][-1] == hashes and len(approvals) == 2
    finally:
        rollout.abort("test over")
        await asyncio.wait([task], timeout=60)


@pytest.mark.parametrize(
    ("approve_destroy", "by_hand", "approvals"),
    [
        (False, True, 1),  # --approve: the retry's new plan replaces, so it is declined
        (True, False, 2),  # the failure tainted v2: a new plan (replace, tainted), approved
        (True, True, 1),  # v3 by hand again: the same normalised plan as approved, used as is
    ],
)
async def test_headless_retry_follows_approve_and_approve_destroy(
    terraform: dict[str, str], tmp_path: Path, approve_destroy: bool, by_hand: bool, approvals: int
) -> None:
    """Headless policy for a retry's new plan: --approve approves only plans that destroy or
    replace nothing, --approve-destroy the rest (recorded with the hash); the approved hash
    again needs no new approval."""
    import asyncio

    # Two approvers: --approve is one of them, so the gate waits (--wait) while the retry runs.
    estate_file = make_estate(tmp_path, 'gate = "manual"\napprovers = 2')
    env = tmp_path / "envs" / "t1"
    if approve_destroy:  # start from v3, applied by hand: the wave's plan replaces it
        apply_by_hand(env, "3")
    rollout, events = rollout_of(
        estate_file, interactive=False, approve=True, wait=True, approve_destroy=approve_destroy
    )
    task = asyncio.ensure_future(rollout.run())
    try:
        await wait_for(lambda: rollout.targets["t1"].status == FAILED, "the failure", 120)
        if by_hand:
            apply_by_hand(env, "3")
        (env / "ok").write_text("")
        await wait_for(lambda: rollout.state == "awaiting_approval", "the gate", 120)
        assert rollout.retry("t1", actor="ci").ok
        if not approve_destroy:
            await wait_for(lambda: "--approve-destroy" in rollout.targets["t1"].reason, "no")
            assert runs(env) == 0 and state_version(env) == "3"
        else:
            await wait_for(lambda: retried(events), "the retry", 120)
            assert rollout.targets["t1"].status == OK, rollout.targets["t1"].reason
            assert runs(env) == 1 and state_version(env) == "2"
        approved = [
            e.reason
            for e in events
            if isinstance(e, OperatorAction) and e.action == "approve_plans"
        ]
        assert len(approved) == approvals and all(a.startswith("--approve") for a in approved)
        reviewed = [e for e in events if isinstance(e, PlansReviewed)]
        same = approvals == 1 and approve_destroy
        assert len(reviewed) == (1 if same else 2)
        used = [e for e in events if "the new plan is the approved one" in getattr(e, "line", "")]
        assert len(used) == int(same)
    finally:
        rollout.abort("test over")
        await asyncio.wait([task], timeout=60)


def test_an_apply_on_a_reviewed_channel_takes_only_an_approved_plan(tmp_path: Path) -> None:
    """No Terraform: what :class:`Reviewed` lets an apply do."""
    from sluice.engine.executors.base import Job
    from sluice.engine.executors.tofu_review import MadePlan, Reviewed

    reviews = Reviewed({"prod"})
    job = Job("t1", "prod", "m", "2", "1", "apply")
    plan = MadePlan(tmp_path / "p", 1, normalised={"resources": []}, file_sha256="ab")
    assert "no approved plan" in str(reviews.take(job))  # never planned and applied unreviewed
    reviews.use(job, plan)
    assert reviews.take(job) is plan and reviews.same_as_approved(job, plan)
    assert "no approved plan" in str(reviews.take(job))  # spent: a retry must be reviewed again
    reviews.failed(job, "state locked by alice")
    assert reviews.take(job) == "not applied: its plan for review failed: state locked by alice"
    reviews.bypass(job)  # a recorded bypass: the apply plans for itself
    assert reviews.take(job) is None
    assert Reviewed({"prod"}).take(Job("t1", "dev", "m", "2", "1", "apply")) is None
    assert Reviewed({"prod"}).take(Job("t1", "prod", "m", "1", "2", "rollback")) is None
