"""The ssh executor's pure parts: jump-host parsing, the variable prelude, describe(). No sshd."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

import pytest

from sluice.engine.executors.base import Job, create_executor
from sluice.engine.executors.ssh import PRELUDE_FAILED, Endpoint, SshExecutor, parse_jump
from sluice.engine.model.estate import parse_estate
from sluice.engine.model.template import MASK, TemplateError
from sluice.engine.support.clock import Clock
from sluice.engine.support.resources import Resources

ESTATE = """
[estate]
name = "ssh-unit"

[[channels]]
name = "fleet"

[targets.web-1]
channel = "fleet"
executor = "box"
vars = { host = "10.0.0.7", region = "eu-west-1" }

[executors.box]
kind = "ssh"
host = "{vars.host}"
port = 2222
user = "deploy"
key = "keys/deploy"
known_hosts = "known_hosts"
jump = "ops@bastion.example:2200"
apply = "deploy --version {version} --token {env.SLUICE_UNIT_TOKEN}"
env = { REGION = "{vars.region}" }

[modules.app]
versions = ["1.0.0", "2.0.0"]
initial = "1.0.0"
"""

JOB = Job(
    "web-1", "fleet", "app", "2.0.0", "1.0.0", "apply", {"host": "10.0.0.7", "region": "eu-west-1"}
)


@pytest.fixture
def executor(tmp_path: Path) -> SshExecutor:
    estate = parse_estate(ESTATE, tmp_path / "estate.toml")
    made = create_executor(estate.executors["box"], estate, Clock(), Resources())
    assert isinstance(made, SshExecutor)
    return made


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("bastion", Endpoint("bastion", 22, "me")),
        ("ops@bastion:2200", Endpoint("bastion", 2200, "ops")),
        ("10.1.2.3:2222", Endpoint("10.1.2.3", 2222, "me")),
        ("ops@[fd00::1]:2222", Endpoint("fd00::1", 2222, "ops")),
        ("[fd00::1]", Endpoint("fd00::1", 22, "me")),
    ],
)
def test_jump_host_forms(text: str, expected: Endpoint) -> None:
    assert parse_jump(text, "me") == expected


@pytest.mark.parametrize("text", ["", "host:0", "host:99999", "host:port", "a:b:c", "@host"])
def test_bad_jump_hosts_are_template_errors(text: str) -> None:
    with pytest.raises(TemplateError, match="expected \\[user@\\]host\\[:port\\]"):
        parse_jump(text, "me")


def test_paths_are_relative_to_the_estate_file(executor: SshExecutor, tmp_path: Path) -> None:
    assert executor.key_path == tmp_path / "keys" / "deploy"
    assert executor.known_hosts == tmp_path / "known_hosts"


def test_describe_names_the_route_and_masks_nothing_secret(
    executor: SshExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLUICE_UNIT_TOKEN", "hunter2-secret")
    described = executor.describe(JOB)
    assert described == (
        "ssh deploy@10.0.0.7:2222 via ops@bastion.example:2200: "
        'deploy --version 2.0.0 --token "${SLUICE_UNIT_TOKEN}"'
    )
    assert "hunter2" not in described and MASK not in described


def test_variables_go_through_a_stdin_prelude(
    executor: SshExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLUICE_UNIT_TOKEN", "hunter2-secret")
    line, variables = executor._command(JOB, "n0nce")
    command = line(False)
    assert line(True) == command  # not spooled: always a marked `sh` of its own
    assert variables == {"SLUICE_UNIT_TOKEN": "hunter2-secret", "REGION": "eu-west-1"}
    wrapper, script = shlex.split(command)[:-1], shlex.split(command)[-1]
    # Run by a marked `sh` (a resume can find it left running).
    marker = f"SLUICE_APPLY={executor.estate_name}/{JOB.target};"
    assert wrapper == ["export", marker, "exec", "sh", "-c"]
    prelude, body = script.split("\n", 1)
    assert prelude == (
        f"IFS= read -r SLUICE_UNIT_TOKEN || exit {PRELUDE_FAILED}; "
        f"IFS= read -r REGION || exit {PRELUDE_FAILED}; export SLUICE_UNIT_TOKEN REGION"
    )
    assert body == 'deploy --version 2.0.0 --token "${SLUICE_UNIT_TOKEN}"'
    assert "hunter2" not in command


async def test_a_missing_secret_fails_the_target_without_connecting(
    executor: SshExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLUICE_UNIT_TOKEN", raising=False)
    result = await executor.apply(JOB, lambda stream, line: None)
    assert not result.ok
    assert (
        result.reason
        == "{env.SLUICE_UNIT_TOKEN}: environment variable SLUICE_UNIT_TOKEN is not set"
    )
    assert executor._pool.connections == {}


def test_a_spooled_apply_runs_in_a_posix_login_shell_itself(
    executor: SshExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLUICE_UNIT_TOKEN", "hunter2-secret")
    job = dataclasses.replace(JOB, spool=tmp_path / "applies" / "3" / "web-1.1")
    line, _ = executor._command(job, "n0nce")
    marker = f"export SLUICE_APPLY={executor.estate_name}/{JOB.target};"
    own_sh = shlex.split(line(False))
    assert own_sh[:5] == ["export", marker.removeprefix("export "), "exec", "sh", "-c"]
    assert own_sh[6:] == ["sluice", f"~/.sluice/applies/{executor.estate_name}/3/web-1.1",
                          'deploy --version 2.0.0 --token "${SLUICE_UNIT_TOKEN}"', "n0nce"]  # fmt: skip
    posix = line(True)  # one program fewer: no `exec sh`, the arguments set in place
    assert posix.startswith(f"{marker} set -- ") and "exec sh -c" not in posix.split("_W=")[0]
    assert shlex.split(posix.split(";", 2)[1])[2:] == own_sh[6:][1:]
