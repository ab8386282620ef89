"""Template rendering: shell quoting, secrets kept out of command lines and displays."""

from __future__ import annotations

import subprocess

import pytest

from sluice.engine.model.template import (
    MASK,
    Context,
    TemplateError,
    placeholder_problem,
    placeholders,
    redact,
    render,
)

HOSTILE = "x; rm -rf / $(touch pwned) `id` 'q' \"dq\" \\ *"


def ctx(**overrides: object) -> Context:
    values: dict[str, object] = {
        "target": "eph-101",
        "channel": "ephemeral",
        "module": "postgres-operator",
        "version": "2.0.0",
        "previous_version": "1.12.0",
        "vars": {"region": "eu-west-1"},
    }
    values.update(overrides)
    return Context(**values)  # type: ignore[arg-type]


def sh(command: str, env: dict[str, str] | None = None) -> list[str]:
    """Run ``command`` with /bin/sh and return its output lines."""
    result = subprocess.run(
        ["/bin/sh", "-c", command],
        capture_output=True,
        text=True,
        env=env or {"PATH": "/usr/bin:/bin"},
        timeout=10,
        check=True,
    )
    return result.stdout.split("\n")[:-1]


def test_simple_placeholders() -> None:
    rendered = render(
        "{module} {previous_version}->{version} on {target} ({channel}, {vars.region})", ctx()
    )
    expected = "postgres-operator 1.12.0->2.0.0 on eph-101 (ephemeral, eu-west-1)"
    assert rendered.text == rendered.display == expected
    assert rendered.env == {}


def test_hostile_target_stays_one_shell_argument(tmp_path) -> None:
    rendered = render(
        'printf "%s\\n" {target} {vars.note}', ctx(target=HOSTILE, vars={"note": "a b"}), shell=True
    )
    assert sh(f"cd {tmp_path} && {rendered.text}") == [HOSTILE, "a b"]
    assert not (tmp_path / "pwned").exists()


def test_secret_in_shell_mode_is_a_variable_reference() -> None:
    secret = "s3cr3t-t0ken with 'quotes' and $dollars"
    rendered = render(
        'printf "%s\\n" {target} {env.API_TOKEN}', ctx(), shell=True, environ={"API_TOKEN": secret}
    )
    assert secret not in rendered.text
    assert secret not in rendered.display
    assert '"${API_TOKEN}"' in rendered.text
    assert rendered.env == {"API_TOKEN": secret}
    # The shell gets the secret from its environment, as one argument.
    assert sh(rendered.text, env={"PATH": "/usr/bin:/bin", **rendered.env}) == ["eph-101", secret]


def test_secret_in_text_mode_is_masked_in_display() -> None:
    rendered = render(
        "https://ci.example/hook?token={env.HOOK_TOKEN}&env={target}",
        ctx(),
        environ={"HOOK_TOKEN": "hunter22"},
    )
    assert rendered.text == "https://ci.example/hook?token=hunter22&env=eph-101"
    assert rendered.display == f"https://ci.example/hook?token={MASK}&env=eph-101"
    assert "hunter22" not in rendered.display
    assert rendered.env == {"HOOK_TOKEN": "hunter22"}


def test_text_mode_does_not_quote() -> None:
    assert render("{target}", ctx(target="a b")).text == "a b"


def test_missing_var_raises() -> None:
    with pytest.raises(
        TemplateError, match=r"\{vars\.bastion\}: target 'eph-101' has no vars\.bastion"
    ):
        render("ssh {vars.bastion}", ctx())


def test_unset_environment_variable_raises() -> None:
    with pytest.raises(TemplateError, match="environment variable NOPE is not set"):
        render("{env.NOPE}", ctx(), environ={})
    with pytest.raises(TemplateError):
        render("{env.NOPE}", ctx(), shell=True, environ={})


def test_response_fields() -> None:
    context = ctx(response={"id": 42, "links": {"self": "/p/42"}, "jobs": [{"id": "j1"}]})
    rendered = render("{response.links.self}/{response.id}/{response.jobs.0.id}", context)
    assert rendered.text == "/p/42/42/j1"
    with pytest.raises(TemplateError, match="no such field"):
        render("{response.missing}", context)


def test_promql_braces_are_left_alone() -> None:
    query = 'rate(pg_seconds_bucket{env="{target}",job=~"pg.*"}[1m]) {} {1} { target }'
    assert render(query, ctx()).text == (
        'rate(pg_seconds_bucket{env="eph-101",job=~"pg.*"}[1m]) {} {1} { target }'
    )
    assert placeholders(query) == ["target"]


def test_placeholders_in_order() -> None:
    assert placeholders("{a}{vars.b-c}x{env.D_1}{target}") == ["a", "vars.b-c", "env.D_1", "target"]


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("target", None),
        ("previous_version", None),
        ("vars.anything", None),
        ("env.TOKEN", None),
        ("nope", "unknown placeholder {nope}"),
        ("vars", "{vars} needs a key"),
        ("env.1X", "not an environment variable name"),
        ("response.id", "unknown placeholder {response.id}"),
        ("target.name", "unknown placeholder {target.name}"),
    ],
)
def test_placeholder_problem(name: str, problem: str | None) -> None:
    found = placeholder_problem(name)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_response_placeholder_only_where_allowed() -> None:
    assert placeholder_problem("response.id", allow_response=True) is None


def test_redact() -> None:
    assert redact("token=abcdef; again abcdef", ["abcdef"]) == f"token={MASK}; again {MASK}"
    # Trivially short values would mask every "a" of a log; they are left alone.
    assert redact("a b", ["a"]) == "a b"
