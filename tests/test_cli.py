"""The command line through its installed entry points: output and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_estate.toml"
SLUICE = Path(sys.executable).parent / "sluice"
HEAVY = ("textual", "rich", "asyncssh", "aiohttp")


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "COLUMNS"))}
    return {**clean, "COLUMNS": "200"}


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sluice.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env(),
        timeout=100,
    )


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SLUICE), *args], capture_output=True, text=True, cwd=ROOT, env=env(), timeout=100
    )


RUNNERS = pytest.mark.parametrize("run", [run_module, run_script], ids=["module", "script"])

BROKEN = """\
[estate]
name = "broken"
colour = "blue"

[[channels]]
name = "dev"
max_parallel = 0
soak = "5 parsecs"

[targets.web-1]
channel = "dev"
executor = "nowhere"

[modules.op]
versions = ["1.0"]
initial = "1.0"
"""


def test_the_console_script_is_installed() -> None:
    assert SLUICE.is_file(), f"{SLUICE} is missing: is the project installed in this venv?"


@RUNNERS
def test_version(run) -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == "sluice 0.1.0"


@RUNNERS
def test_help(run) -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("check", "plan", "run", "resume", "rollback", "history", "show", "replay"):
        assert command in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize("argv", [["--help"], ["check", str(SAMPLE)], ["plan", "--help"]])
def test_help_and_check_do_not_import_the_console(argv: list[str]) -> None:
    code = (
        "import json, sys, sluice.cli\n"
        "import contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    code = sluice.cli.main({argv!r})\n"
        "print(json.dumps({'code': code, 'modules': sorted(sys.modules)}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env(),
        timeout=100,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["code"] == 0
    loaded = {name.split(".")[0] for name in report["modules"]}
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_help_import_time_has_no_console() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-c",
            "import sys, sluice.cli; sys.exit(sluice.cli.main(['--help']))",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env(),
        timeout=100,
    )
    assert result.returncode == 0
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()]
    assert "sluice.cli" in imported
    assert not [name for name in imported if name.split(".")[0] in HEAVY]


@RUNNERS
def test_check_sample(run) -> None:
    result = run("check", "sample_estate.toml")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("sample_estate.toml: ok")
    assert "36 targets in 4 channels (7 waves)" in lines[0]
    assert result.stderr == ""


def test_check_counts_the_waves_a_small_channel_really_has(tmp_path: Path) -> None:
    path = tmp_path / "small.toml"
    path.write_text(
        '[estate]\nname = "small"\n\n[[channels]]\nname = "dev"\nwaves = [1, "25%", "100%"]\n\n'
        '[executors.sim]\nkind = "simulated"\n\n[modules.op]\nversions = ["1"]\ninitial = "1"\n\n'
        '[targets.a]\nchannel = "dev"\nexecutor = "sim"\n\n'
        '[targets.b]\nchannel = "dev"\nexecutor = "sim"\n'
    )
    result = run_script("check", str(path))
    assert result.returncode == 0, result.stderr
    # Two targets cannot make three waves: the plan has 1 + 1.
    assert "2 targets in 1 channels (2 waves)" in result.stdout


@RUNNERS
def test_check_broken_estate(run, tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(BROKEN)
    result = run("check", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines == [
        f"{path}:3: estate.colour: unknown key",
        f"{path}:7: channels[0].max_parallel: 0 is below the minimum 1",
        f"{path}:8: channels[0].soak: '5 parsecs' is not a duration "
        "(use e.g. '300ms', '10s', '2m', '1h30m')",
        f"{path}:12: targets.web-1.executor: unknown executor 'nowhere'",
    ]


def test_check_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[estate]\nname = "x"\nsoak = = 1\n')
    result = run_script("check", str(path))
    assert result.returncode == 2
    assert result.stderr == f"{path}:3: TOML syntax error: Invalid value (column 8)\n"


@RUNNERS
def test_check_missing_file(run, tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    result = run("check", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr == f"{path}: cannot read the estate file: No such file or directory\n"


@RUNNERS
def test_plan_table(run) -> None:
    result = run("plan", "sample_estate.toml", "postgres-operator@2.0.0")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "4 channels, 7 waves, 36 targets" in out
    rows = [
        "ephemeral 1/1",
        "dev 1/1",
        "staging 1/2",
        "staging 2/2",
        "production 1/3",
        "production 2/3",
        "production 3/3",
    ]
    positions = [out.find(row) for row in rows]
    assert -1 not in positions, out
    assert positions == sorted(positions)
    assert "100%" in out  # the last wave's blast radius
    assert "estimated duration" in out


@RUNNERS
def test_plan_json(run) -> None:
    result = run("plan", "sample_estate.toml", "postgres-operator@2.0.0", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert (document["module"], document["version"]) == ("postgres-operator", "2.0.0")
    assert len(document["waves"]) == 7
    assert [w["channel"] for w in document["waves"]] == [
        "ephemeral",
        "dev",
        "staging",
        "staging",
        "production",
        "production",
        "production",
    ]
    assert sum(len(w["targets"]) for w in document["waves"]) == 36
    assert document["waves"][-1]["blast_radius"] == 1.0
    assert document["expected_seconds"] == pytest.approx(
        sum(w["expected_seconds"] for w in document["waves"]), abs=0.01
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nope@1.0", "unknown module 'nope'"),
        ("postgres-operator@9.9.9", "postgres-operator has no version '9.9.9'"),
        ("postgres-operator", "expected MODULE@VERSION"),
    ],
)
def test_plan_bad_spec(spec: str, message: str) -> None:
    result = run_script("plan", "sample_estate.toml", spec)
    assert result.returncode == 2
    assert result.stdout == ""
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_plan_broken_estate(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(BROKEN)
    result = run_script("plan", str(path), "op@1.0")
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 4


@RUNNERS
@pytest.mark.parametrize(
    "argv",
    [
        ["check", "--bogus", "sample_estate.toml"],
        ["--bogus"],
        ["check"],
        ["plan", "sample_estate.toml"],
        ["rollback", "sample_estate.toml", "--headless"],  # needs --wave or --target
        ["run", "sample_estate.toml", "postgres-operator@2.0.0", "--time-scale", "-1"],
    ],
)
def test_bad_arguments_exit_2(run, argv: list[str]) -> None:
    result = run(*argv)
    assert result.returncode == 2
    assert "usage:" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_headless_run_collects_its_youngest_objects_less_often() -> None:
    """After start-up (collector paused by main), the run's collector is on, with the young
    generation's threshold raised for a headless rollout and left as it was otherwise."""
    import gc

    from sluice.cli import process

    before, enabled = gc.get_threshold(), gc.isenabled()
    try:
        for young, expected in ((None, before[0]), (process.HEADLESS_YOUNG, 20_000)):
            gc.enable()
            assert process.pause_collector() and not gc.isenabled()
            process.long_running(young=young)
            assert gc.isenabled()
            assert gc.get_threshold() == (expected, *before[1:])
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
        if not enabled:
            gc.disable()
