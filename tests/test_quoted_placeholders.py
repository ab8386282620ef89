"""A placeholder inside shell quotes in a command template is an error `sluice check` reports
with its line (issue 12, item 6), so a hostile value never runs: real `sluice check` and
`sluice run` processes, a real shell."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ESTATE = """\
[estate]
name = "quotes"

[[channels]]
name = "dev"

[targets.a]
channel = "dev"
executor = "sh"
vars = {{ x = "$(touch {pwned})" }}

[executors.sh]
kind = "local"
apply = {apply}

[modules.m]
versions = ["1", "2"]
initial = "1"
"""


def sluice(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sluice.cli", *map(str, args)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _estate(tmp_path: Path, apply: str) -> tuple[Path, Path]:
    pwned = tmp_path / "pwned"
    estate = tmp_path / "estate.toml"
    estate.write_text(ESTATE.format(apply=apply, pwned=pwned))
    return estate, pwned


@pytest.mark.parametrize(
    "apply",
    [
        """'printf "%s" "{vars.x}"'""",  # double quotes
        '''"printf '%s' '{vars.x}'"''',  # single quotes
        '''"echo \\"v={vars.x}\\""''',  # inside a quoted word
        """'echo "a" "b {target}"'""",  # any placeholder, not only vars
        '''"echo 'x' \\"$HOME {env.HOME}\\""''',  # a secret too
    ],
)
def test_check_reports_a_placeholder_inside_quotes(tmp_path: Path, apply: str) -> None:
    estate, pwned = _estate(tmp_path, apply)
    done = sluice("check", estate)
    assert done.returncode == 2, done
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"{estate}:14: executors.sh.apply: "), lines[0]
    assert "inside shell quotes" in lines[0], lines[0]
    run = sluice("run", estate, "m@2", "--headless", "--time-scale", "0")
    assert run.returncode == 2, run
    assert not pwned.exists()  # the payload never ran


@pytest.mark.parametrize(
    "apply",
    [
        """'printf "%s\\n" {vars.x}'""",  # bare, beside quoted text
        """"echo 'it''s' {vars.x}" """.strip(),  # quotes that close before it
        '''"echo \\\\'{vars.x}"''',  # an escaped quote is no quote
    ],
)
def test_bare_placeholders_pass_and_the_value_stays_data(tmp_path: Path, apply: str) -> None:
    estate, pwned = _estate(tmp_path, apply)
    done = sluice("check", estate)
    assert done.returncode == 0, done
    run = sluice("run", estate, "m@2", "--headless", "--time-scale", "0")
    assert run.returncode == 0, run
    assert not pwned.exists()
