"""Small estates around one Terraform configuration, for the executor's tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from sluice.engine.executors.base import ApplyResult, Job
from sluice.engine.executors.tofu import TofuExecutor
from sluice.engine.model.estate import Estate, load_estate
from sluice.engine.support.clock import Clock
from sluice.engine.support.resources import Resources

#: A resource whose create or update runs ``command`` (a local-exec provisioner): slow or failing
#: applies. ``input`` follows the version, so every new version changes it.
PROVISIONED = """
variable "v" {
  type = string
}
variable "command" {
  type    = string
  default = "true"
}
resource "terraform_data" "step" {
  input            = var.v
  triggers_replace = var.v
  provisioner "local-exec" {
    command = var.command
  }
}
output "version" {
  value = var.v
}
"""


def estate_with(
    root: Path,
    main_tf: str,
    *,
    settings: dict[str, str] | None = None,
    targets: tuple[str, ...] = ("t1",),
    channel: str = "",
) -> Estate:
    """An estate of ``targets`` (one channel) whose tofu executor runs ``main_tf`` in envs/NAME.

    ``settings`` are executor keys with their TOML values as text, over the defaults here.
    """
    for target in targets:
        (root / "envs" / target).mkdir(parents=True, exist_ok=True)
        (root / "envs" / target / "main.tf").write_text(main_tf)
    keys = {
        "kind": '"tofu"',
        "binary": '"terraform"',
        "dir": '"envs/{target}"',
        "vars": '{ v = "{version}" }',
        "timeout": '"2m"',
        "stop_grace": '"30s"',
        **(settings or {}),
    }
    lines = [
        '[estate]\nname = "tf-test"\n',
        f'[[channels]]\nname = "one"\nmax_parallel = 4\n{channel}\n',
        "[executors.iac]",
        *(f"{key} = {value}" for key, value in keys.items()),
        '\n[modules.m]\nversions = ["1", "2", "3"]\ninitial = "1"\n',
    ]
    for target in targets:
        lines.append(f'[targets.{target}]\nchannel = "one"\nexecutor = "iac"\n')
    path = root / "estate.toml"
    path.write_text("\n".join(lines))
    return load_estate(path)


def executor_for(estate: Estate) -> TofuExecutor:
    return TofuExecutor(estate.executors["iac"], estate, Clock(), Resources())


def job(target: str = "t1", version: str = "2", previous: str = "1", action: str = "apply") -> Job:
    return Job(target, "one", "m", version, previous, action)


async def apply(
    executor: TofuExecutor, the_job: Job | None = None
) -> tuple[ApplyResult, list[str]]:
    lines: list[str] = []
    result = await executor.apply(the_job or job(), lambda stream, line: lines.append(line))
    return result, lines


async def wait_for(predicate: Callable[[], object], what: str, seconds: float = 60.0) -> None:
    """Poll ``predicate()`` until true, failing after ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
