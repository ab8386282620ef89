"""The tofu executor's estate keys: validated with line numbers like every other key."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.engine.model.estate import EstateError, parse_estate

ESTATE = """[estate]
name = "x"

[[channels]]
name = "one"
review = "{review}"

[executors.iac]
kind = "tofu"
dir = "envs/{{target}}"
{extra}

[modules.m]
versions = ["1"]
initial = "1"

[targets.t1]
channel = "one"
executor = "iac"
aliases = ["eu-west-1"]
"""


def problems(review: str = "plans", extra: str = "") -> list[str]:
    try:
        parse_estate(ESTATE.format(review=review, extra=extra), Path("e.toml"))
    except EstateError as exc:
        return [str(p) for p in exc.problems]
    return []


def test_a_full_tofu_executor_is_valid() -> None:
    extra = "\n".join(
        [
            'binary = "terraform"',
            'workspace = "{target}"',
            'var_file = "vars/{target}.tfvars"',
            'vars = { operator_version = "{version}" }',
            'backend_config = { key = "{target}.tfstate" }',
            'init = "always"',
            'lock_timeout = "2m"',
            'stop_grace = "5m"',
            'version_output = "operator_version"',
            'timeout = "30m"',
            'env = { TF_LOG = "warn" }',
            "fail_on_check_warnings = true",
        ]
    )
    assert problems(extra=extra) == []
    estate = parse_estate(ESTATE.format(review="plans", extra=extra), Path("e.toml"))
    assert estate.executors["iac"].settings["lock_timeout"] == 120.0
    assert estate.channels[0].review == "plans"
    assert estate.targets["t1"].aliases == ("eu-west-1",)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            'init = "sometimes"',
            "e.toml:11: executors.iac.init: expected one of 'auto', 'always', 'never'",
        ),
        ('lock_timeout = "soon"', "e.toml:11: executors.iac.lock_timeout:"),
        ("stop_grace = 5", "e.toml:11: executors.iac.stop_grace: expected a duration string"),
        ("vars = { v = 1 }", "e.toml:11: executors.iac.vars: expected a table of strings"),
        (
            'lock_timout = "1m"',
            "e.toml:11: executors.iac.lock_timout: unknown key (did you mean 'lock_timeout'?)",
        ),
        ('workspace = "{nope}"', "e.toml:11: executors.iac.workspace:"),
    ],
)
def test_bad_tofu_keys_are_named_with_their_line(extra: str, expected: str) -> None:
    found = problems(extra=extra)
    assert len(found) == 1 and found[0].startswith(expected), found


def test_missing_dir_and_bad_review() -> None:
    source = ESTATE.format(review="maybe", extra="").replace('dir = "envs/{target}"\n', "")
    with pytest.raises(EstateError) as caught:
        parse_estate(source, Path("e.toml"))
    shown = [str(p) for p in caught.value.problems]
    assert any(
        s.startswith("e.toml:6: channels[0].review: expected one of 'none', 'plans'") for s in shown
    )
    assert any("executors.iac: missing required key 'dir'" in s for s in shown)


def test_secret_variables_travel_in_the_environment_not_on_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sluice.engine.executors.base import Job
    from sluice.engine.executors.tofu_workdir import build_workdir

    monkeypatch.setenv("DB_PASSWORD", "hunter2")
    monkeypatch.delenv("TF_PLUGIN_CACHE_DIR", raising=False)
    settings = {
        "dir": "envs/{target}",
        "vars": {"app_version": "{version}", "db_password": "{env.DB_PASSWORD}"},
        "backend_config": {"key": "{target}.tfstate"},
        "var_file": "vars/{target}.tfvars",
    }
    work = build_workdir(
        settings,
        tmp_path,
        tmp_path / ".sluice" / "tofu",
        "e",
        Job("t1", "c", "m", "2", "1", "apply"),
    )
    assert work.var_args == ("-var-file=vars/t1.tfvars", "-var=app_version=2")
    assert not any("hunter2" in arg for arg in work.var_args + work.init_args)
    assert work.env["TF_VAR_db_password"] == "hunter2"
    assert work.init_args == ("-backend-config=key=t1.tfstate",)
    assert work.env["TF_IN_AUTOMATION"] == "1" and work.env["SLUICE_APPLY"] == "e/t1"
    assert work.env["TF_PLUGIN_CACHE_DIR"] == str(tmp_path / ".sluice" / "tofu" / "plugin-cache")
    monkeypatch.setenv("TF_PLUGIN_CACHE_DIR", "/mine")  # the user's own cache is kept
    work = build_workdir(settings, tmp_path, tmp_path, "e", Job("t1", "c", "m", "2", "1", "apply"))
    assert work.env["TF_PLUGIN_CACHE_DIR"] == "/mine"
