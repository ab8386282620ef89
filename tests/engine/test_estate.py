"""Estate validation: every problem located as ``FILE:LINE: key.path: message``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sluice.engine.model.estate import Estate, EstateError, Problem, load_estate

SAMPLE = Path(__file__).resolve().parents[2] / "sample_estate.toml"

# A minimal valid estate. Cases append tables to it or replace one of its lines.
BASE = """\
[estate]
name = "test"

[[channels]]
name = "dev"
checks = ["latency"]

[targets.web-1]
channel = "dev"
executor = "sim"

[executors.sim]
kind = "simulated"

[checks.latency]
source = "simulated"
metric = "p99_latency"

[modules.op]
versions = ["1.0", "2.0"]
initial = "1.0"
"""


def line_of(source: str, needle: str) -> int:
    """The 1-based line of the one line of ``source`` that contains ``needle``."""
    hits = [n for n, text in enumerate(source.split("\n"), start=1) if needle in text]
    assert len(hits) == 1, f"{needle!r} occurs on lines {hits}"
    return hits[0]


def write(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "estate.toml"
    path.write_text(source, encoding="utf-8")
    return path


def problems_of(tmp_path: Path, source: str) -> list[Problem]:
    path = write(tmp_path, source)
    with pytest.raises(EstateError) as caught:
        load_estate(path)
    # The exception's text is the problems, one per line, in the same order.
    assert str(caught.value).split("\n") == [str(p) for p in caught.value.problems]
    return caught.value.problems


def only_problem(tmp_path: Path, source: str) -> Problem:
    problems = problems_of(tmp_path, source)
    assert len(problems) == 1, "\n".join(map(str, problems))
    return problems[0]


def assert_problem(problem: Problem, tmp_path: Path, line: int, key: str, *fragments: str) -> None:
    """``problem`` reads ``FILE:LINE: key: ...`` and its message holds every fragment."""
    file = str(tmp_path / "estate.toml")
    assert str(problem).startswith(f"{file}:{line}: {key}: "), str(problem)
    assert (problem.file, problem.line, problem.key) == (file, line, key)
    for fragment in fragments:
        assert fragment in problem.message, str(problem)


def test_base_estate_is_valid(tmp_path: Path) -> None:
    estate = load_estate(write(tmp_path, BASE))
    assert isinstance(estate, Estate)
    assert [c.name for c in estate.channels] == ["dev"]
    assert estate.channel("dev").targets == ("web-1",)


# --- syntax -------------------------------------------------------------------------------------


def test_toml_syntax_error_keeps_line_and_column(tmp_path: Path) -> None:
    source = BASE.replace('metric = "p99_latency"', "metric = = 1")
    problem = only_problem(tmp_path, source)
    line = line_of(source, "metric = = 1")
    assert problem.line == line == 17
    assert str(problem) == (
        f"{tmp_path / 'estate.toml'}:17: TOML syntax error: Invalid value (column 10)"
    )


def test_toml_syntax_error_at_end_of_document_has_a_line(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, BASE + 'description = "never closed')
    assert problem.line == BASE.count("\n") + 1
    assert "TOML syntax error" in problem.message
    assert "Unterminated string" in problem.message


def test_duplicate_table_is_a_syntax_error(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, BASE + '\n[targets.web-1]\nchannel = "dev"\n')
    assert problem.line == BASE.count("\n") + 2
    assert "TOML syntax error" in problem.message


# --- unknown keys -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "key", "suggestion"),
    [
        ('name = "test"', 'name = "test"\nnmae = "typo"', "estate.nmae", "name"),
        ('checks = ["latency"]', 'checks = ["latency"]\nsaok = "1m"', "channels[0].saok", "soak"),
        ('executor = "sim"', 'executor = "sim"\nchanel = "dev"', "targets.web-1.chanel", "channel"),
        (
            'kind = "simulated"',
            'kind = "simulated"\nduratoin = "2s"',
            "executors.sim.duratoin",
            "duration",
        ),
        (
            'metric = "p99_latency"',
            'metric = "p99_latency"\nintervall = "5s"',
            "checks.latency.intervall",
            "interval",
        ),
        ('initial = "1.0"', 'initial = "1.0"\nversion = ["3"]', "modules.op.version", "versions"),
    ],
)
def test_unknown_key_with_did_you_mean(
    tmp_path: Path, old: str, new: str, key: str, suggestion: str
) -> None:
    source = BASE.replace(old, new)
    typo = new.split("\n")[1]
    problem = only_problem(tmp_path, source)
    assert_problem(
        problem, tmp_path, line_of(source, typo), key, f"unknown key (did you mean '{suggestion}'?)"
    )


def test_unknown_key_far_from_any_known_has_no_suggestion(tmp_path: Path) -> None:
    source = BASE.replace('name = "test"', 'name = "test"\nzzqqxx = 1')
    problem = only_problem(tmp_path, source)
    assert_problem(problem, tmp_path, 3, "estate.zzqqxx", "unknown key")
    assert "did you mean" not in problem.message


def test_unknown_top_level_table(tmp_path: Path) -> None:
    source = BASE + '\n[targetz.web-2]\nchannel = "dev"\n'
    problem = only_problem(tmp_path, source)
    assert_problem(
        problem,
        tmp_path,
        line_of(source, "[targetz.web-2]"),
        "targetz",
        "unknown table (did you mean 'targets'?)",
    )


def test_unknown_key_of_another_executor_kind(tmp_path: Path) -> None:
    # `host` belongs to ssh executors, not simulated ones.
    source = BASE.replace('kind = "simulated"', 'kind = "simulated"\nhost = "h"')
    problem = only_problem(tmp_path, source)
    assert_problem(problem, tmp_path, line_of(source, 'host = "h"'), "executors.sim.host")


# --- missing keys -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("drop", "table_header", "key", "missing"),
    [
        ('executor = "sim"\n', "[targets.web-1]", "targets.web-1", "executor"),
        ('kind = "simulated"\n', "[executors.sim]", "executors.sim", "kind"),
        ('source = "simulated"\n', "[checks.latency]", "checks.latency", "source"),
        ('initial = "1.0"\n', "[modules.op]", "modules.op", "initial"),
        ('metric = "p99_latency"\n', "[checks.latency]", "checks.latency", "metric"),
        ('name = "test"\n', "[estate]", "estate", "name"),
    ],
)
def test_missing_required_key(
    tmp_path: Path, drop: str, table_header: str, key: str, missing: str
) -> None:
    source = BASE.replace(drop, "", 1)
    problem = only_problem(tmp_path, source)
    assert_problem(
        problem,
        tmp_path,
        line_of(source, table_header),
        key,
        f"missing required key {missing!r}",
    )


def test_missing_target_channel(tmp_path: Path) -> None:
    source = BASE.replace('channel = "dev"\n', "")
    problems = problems_of(tmp_path, source)
    assert len(problems) == 2
    assert_problem(problems[0], tmp_path, 4, "channels[0]", "channel 'dev' has no targets")
    assert_problem(problems[1], tmp_path, 8, "targets.web-1", "missing required key 'channel'")


def test_missing_channel_name(tmp_path: Path) -> None:
    source = (
        BASE
        + '\n[[channels]]\nmax_parallel = 2\n\n[targets.web-2]\nchannel = "dev"\nexecutor = "sim"\n'
    )
    problem = only_problem(tmp_path, source)
    # The second [[channels]] header is the last line that starts with it.
    header = [n for n, t in enumerate(source.split("\n"), 1) if t == "[[channels]]"][-1]
    assert_problem(problem, tmp_path, header, "channels[1]", "missing required key 'name'")


def test_missing_executor_apply_for_its_kind(tmp_path: Path) -> None:
    source = BASE.replace('kind = "simulated"', 'kind = "local"')
    problem = only_problem(tmp_path, source)
    assert_problem(
        problem, tmp_path, line_of(source, "[executors.sim]"), "executors.sim", "'apply'"
    )


def test_missing_estate_table(tmp_path: Path) -> None:
    source = BASE.replace('[estate]\nname = "test"\n', "")
    problems = problems_of(tmp_path, source)
    assert [p.message for p in problems] == ["missing the [estate] table (name = ...)"]


# --- wrong types --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "key", "fragment"),
    [
        ('name = "test"', "name = 5", "estate.name", "expected a string, got an integer"),
        (
            'checks = ["latency"]',
            'checks = ["latency"]\nmax_parallel = "8"',
            "channels[0].max_parallel",
            "expected an integer, got a string",
        ),
        ('checks = ["latency"]', 'checks = "latency"', "channels[0].checks", "list of strings"),
        (
            'checks = ["latency"]',
            'checks = ["latency"]\ngate = "sometimes"',
            "channels[0].gate",
            "expected one of 'auto', 'manual', got 'sometimes'",
        ),
        (
            'checks = ["latency"]',
            'checks = ["latency"]\nsoak = 30',
            "channels[0].soak",
            "expected a duration string",
        ),
        (
            'kind = "simulated"',
            'kind = "simulated"\nfailure_rate = "high"',
            "executors.sim.failure_rate",
            "expected a number, got a string",
        ),
        (
            'metric = "p99_latency"',
            'metric = "p99_latency"\nmax = true',
            "checks.latency.max",
            "expected a number, got a boolean",
        ),
        ('executor = "sim"', 'executor = "sim"\nvars = []', "targets.web-1.vars", "a table"),
        (
            'executor = "sim"',
            'executor = "sim"\nvars = { region = ["a"] }',
            "targets.web-1.vars.region",
            "expected a string or a number",
        ),
        ('versions = ["1.0", "2.0"]', 'versions = "1.0"', "modules.op.versions", "list of strings"),
    ],
)
def test_wrong_type(tmp_path: Path, old: str, new: str, key: str, fragment: str) -> None:
    source = BASE.replace(old, new)
    problem = only_problem(tmp_path, source)
    assert_problem(problem, tmp_path, line_of(source, new.split("\n")[-1]), key, fragment)


def test_section_of_the_wrong_shape(tmp_path: Path) -> None:
    # Top-level keys must come before the first table header.
    source = 'estate = 1\ntargets = ["web-1"]\n' + BASE.replace(
        '[estate]\nname = "test"', ""
    ).replace('[targets.web-1]\nchannel = "dev"\nexecutor = "sim"', "")
    problems = problems_of(tmp_path, source)
    assert [(p.line, p.key) for p in problems] == [
        (1, "estate"),
        (2, "targets"),
        (2, "targets"),
    ]
    assert problems[0].message == "expected a table, got an integer"
    assert problems[1].message == "expected a table of named entries, got a list"
    assert problems[2].message == "the estate defines no [targets.NAME]"


def test_history_under_an_unknown_home(tmp_path: Path) -> None:
    source = BASE.replace('name = "test"', 'name = "test"\nhistory = "~nosuchuser-sluice/h.db"')
    problem = only_problem(tmp_path, source)
    assert_problem(problem, tmp_path, 3, "estate.history", "no such user")


def test_quoted_names_are_quoted_in_key_paths(tmp_path: Path) -> None:
    # A target named "db.primary<newline>x": the key path quotes it, so the line stays one line.
    source = BASE + '\n[targets."db.primary\\nx"]\nchannel = "dve"\nexecutor = "sim"\n'
    problem = only_problem(tmp_path, source)
    assert_problem(
        problem,
        tmp_path,
        line_of(source, 'channel = "dve"'),
        'targets."db.primary\\nx".channel',
        "unknown channel 'dve'",
    )
    assert "\n" not in str(problem)


# --- references ---------------------------------------------------------------------------------


def test_target_names_unknown_channel_with_suggestion(tmp_path: Path) -> None:
    source = BASE.replace('channel = "dev"', 'channel = "dve"').replace(
        'checks = ["latency"]', 'checks = ["latency"]\n\n[[channels]]\nname = "prod"'
    )
    source += '\n[targets.web-2]\nchannel = "prod"\nexecutor = "sim"\n'
    problems = problems_of(tmp_path, source)
    assert len(problems) == 2, problems
    # The dev channel lost its only target, so it is reported too, on its own (earlier) line.
    assert_problem(problems[0], tmp_path, 4, "channels[0]", "channel 'dev' has no targets")
    assert_problem(
        problems[1],
        tmp_path,
        line_of(source, 'channel = "dve"'),
        "targets.web-1.channel",
        "unknown channel 'dve' (did you mean 'dev'?)",
    )


def test_target_names_unknown_executor_with_suggestion(tmp_path: Path) -> None:
    source = BASE.replace('executor = "sim"', 'executor = "simm"')
    problem = only_problem(tmp_path, source)
    assert_problem(
        problem,
        tmp_path,
        line_of(source, 'executor = "simm"'),
        "targets.web-1.executor",
        "unknown executor 'simm' (did you mean 'sim'?)",
    )


def test_channel_references_undefined_check(tmp_path: Path) -> None:
    source = BASE.replace('checks = ["latency"]', 'checks = ["latency", "latncy", "other"]')
    problems = problems_of(tmp_path, source)
    line = line_of(source, "checks = [")
    assert len(problems) == 2
    assert_problem(
        problems[0],
        tmp_path,
        line,
        "channels[0].checks",
        "unknown check 'latncy' (did you mean 'latency'?)",
    )
    assert_problem(problems[1], tmp_path, line, "channels[0].checks", "unknown check 'other'")


def test_duplicate_channel_names(tmp_path: Path) -> None:
    source = BASE + '\n[[channels]]\nname = "dev"\n'
    problem = only_problem(tmp_path, source)
    assert_problem(
        problem,
        tmp_path,
        source.count("\n"),
        "channels[1].name",
        "duplicate channel name 'dev' (also channels[0])",
    )


def test_channel_with_no_targets(tmp_path: Path) -> None:
    source = BASE + '\n[[channels]]\nname = "prod"\n'
    problem = only_problem(tmp_path, source)
    assert_problem(
        problem, tmp_path, source.count("\n") - 1, "channels[1]", "channel 'prod' has no targets"
    )


def test_module_initial_not_in_versions(tmp_path: Path) -> None:
    source = BASE.replace('initial = "1.0"', 'initial = "1.1"')
    problem = only_problem(tmp_path, source)
    assert_problem(
        problem,
        tmp_path,
        line_of(source, 'initial = "1.1"'),
        "modules.op.initial",
        "'1.1' is not one of versions",
    )


# --- values -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("new", "key", "fragment"),
    [
        ('soak = "5 parsecs"', "channels[0].soak", "'5 parsecs' is not a duration"),
        ('soak = "-5s"', "channels[0].soak", "is not a duration"),
        ('soak = ""', "channels[0].soak", "empty duration"),
        ('max_failures = "150%"', "channels[0].max_failures", "'150%' is outside"),
        ('max_failures = "lots%"', "channels[0].max_failures", "is not a percentage"),
        ("max_failures = -1", "channels[0].max_failures", "-1 must be ≥ 0"),
        ("max_parallel = 0", "channels[0].max_parallel", "0 is below the minimum 1"),
        ("max_parallel = -3", "channels[0].max_parallel", "-3 is below the minimum 1"),
        ('waves = [1, "0%"]', "channels[0].waves", "outside 0 (excluded)"),
        ("waves = []", "channels[0].waves", "non-empty list"),
    ],
)
def test_bad_channel_value(tmp_path: Path, new: str, key: str, fragment: str) -> None:
    source = BASE.replace('checks = ["latency"]', f'checks = ["latency"]\n{new}')
    problem = only_problem(tmp_path, source)
    assert_problem(problem, tmp_path, line_of(source, new), key, fragment)


@pytest.mark.parametrize(
    ("new", "key", "fragment"),
    [
        ("failure_limit = -1", "checks.latency.failure_limit", "-1 is below the minimum 0"),
        ("inconclusive_limit = -2", "checks.latency.inconclusive_limit", "below the minimum 0"),
        ('interval = "10 parsecs"', "checks.latency.interval", "is not a duration"),
        ('max_increase = "-20%"', "checks.latency.max_increase", "must not be negative"),
        ("max = nan", "checks.latency.max", "nan"),
        ('duration = "6s..2s"', "executors.sim.duration", "upper bound is below"),
        ("failure_rate = 1.5", "executors.sim.failure_rate", "above the maximum 1"),
    ],
)
def test_bad_check_or_executor_value(tmp_path: Path, new: str, key: str, fragment: str) -> None:
    anchor = 'metric = "p99_latency"' if key.startswith("checks") else 'kind = "simulated"'
    source = BASE.replace(anchor, f"{anchor}\n{new}")
    problem = only_problem(tmp_path, source)
    assert_problem(problem, tmp_path, line_of(source, new), key, fragment)


def _two_target_estate(waves: str) -> str:
    return BASE.replace('checks = ["latency"]', f'checks = ["latency"]\nwaves = {waves}') + (
        '\n[targets.web-2]\nchannel = "dev"\nexecutor = "sim"\n'
    )


@pytest.mark.parametrize(
    ("waves", "fragment"),
    [
        ("[2, 1]", "waves must increase: 1 after 2"),
        ('["50%", "25%"]', "waves must increase: 25% after 50%"),
        ('[1, 1, "100%"]', "waves must increase: 1 after 1"),
        ('[1, 5, "100%"]', "wave of 5 exceeds the channel's 2 target(s)"),
    ],
)
def test_bad_waves(tmp_path: Path, waves: str, fragment: str) -> None:
    source = _two_target_estate(waves)
    problem = only_problem(tmp_path, source)
    assert_problem(problem, tmp_path, line_of(source, "waves ="), "channels[0].waves", fragment)


def test_waves_smaller_than_the_list_are_fine(tmp_path: Path) -> None:
    estate = load_estate(write(tmp_path, _two_target_estate('[1, "25%", "100%"]')))
    assert len(estate.channel("dev").waves) == 3


# --- templates ----------------------------------------------------------------------------------

SSH = """
[executors.bastion]
kind = "ssh"
host = "{vars.bastion}"
user = "deploy"
apply = "sudo /opt/platform/apply {module} {version}"
"""


def test_unresolved_var_names_the_target(tmp_path: Path) -> None:
    source = (
        BASE.replace('executor = "sim"', 'executor = "bastion"')
        + SSH
        + '\n[targets.web-2]\nchannel = "dev"\nexecutor = "bastion"\nvars = { bastion = "b" }\n'
    )
    problem = only_problem(tmp_path, source)
    assert_problem(
        problem,
        tmp_path,
        line_of(source, 'host = "{vars.bastion}"'),
        "executors.bastion.host",
        "{vars.bastion} cannot be resolved for target(s) web-1: no vars.bastion",
    )
    assert "web-2" not in problem.message


def test_unresolved_var_in_a_check_names_the_targets_of_its_channels(tmp_path: Path) -> None:
    source = BASE.replace('checks = ["latency"]', 'checks = ["latency", "p99"]') + (
        '\n[checks.p99]\nsource = "prometheus"\nurl = "http://{vars.prometheus}:9090"\n'
        "query = 'p99{env=\"{target}\"}'\n"
        '\n[targets.web-2]\nchannel = "dev"\nexecutor = "sim"\nvars = { prometheus = "p" }\n'
        '\n[targets.web-3]\nchannel = "dev"\nexecutor = "sim"\n'
    )
    problem = only_problem(tmp_path, source)
    assert_problem(
        problem,
        tmp_path,
        line_of(source, "url ="),
        "checks.p99.url",
        "{vars.prometheus} cannot be resolved for target(s) web-1, web-3: no vars.prometheus",
    )


def test_unknown_placeholder(tmp_path: Path) -> None:
    source = BASE.replace(
        'executor = "sim"', 'executor = "bastion"\nvars = { bastion = "b" }'
    ) + SSH.replace("{version}", "{version} {nope}")
    problem = only_problem(tmp_path, source)
    assert_problem(
        problem,
        tmp_path,
        line_of(source, "{nope}"),
        "executors.bastion.apply",
        "unknown placeholder {nope}",
    )


def test_unknown_placeholder_in_an_executor_no_target_uses(tmp_path: Path) -> None:
    source = BASE + SSH.replace("{version}", "{verison}")
    problem = only_problem(tmp_path, source)
    assert_problem(
        problem,
        tmp_path,
        line_of(source, "{verison}"),
        "executors.bastion.apply",
        "unknown placeholder {verison}",
    )


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("{vars}", "{vars} needs a key"),
        ("{env.1BAD}", "not an environment variable name"),
        ("{target.name}", "unknown placeholder {target.name}"),
    ],
)
def test_malformed_placeholders(tmp_path: Path, template: str, fragment: str) -> None:
    source = BASE.replace(
        'executor = "sim"', f'executor = "sim"\ndashboard = "https://g/{template}"'
    )
    problem = only_problem(tmp_path, source)
    assert_problem(
        problem, tmp_path, line_of(source, "dashboard"), "targets.web-1.dashboard", fragment
    )


def test_promql_label_braces_are_not_placeholders(tmp_path: Path) -> None:
    query = (
        'histogram_quantile(0.99, sum by (le) (rate(pg_query_seconds_bucket{env="{target}"}[1m])))'
    )
    source = BASE.replace('checks = ["latency"]', 'checks = ["latency", "p99"]') + (
        f'\n[checks.p99]\nsource = "prometheus"\nurl = "http://127.0.0.1:9090"\nquery = \'{query}\'\n'
        "max = 0.25\n"
    )
    estate = load_estate(write(tmp_path, source))
    assert estate.checks["p99"].settings["query"] == query


def test_env_and_known_placeholders_are_accepted(tmp_path: Path) -> None:
    source = BASE + (
        '\n[executors.tofu]\nkind = "local"\n'
        'apply = "tofu apply -var v={version} -var p={previous_version} {channel} {target} '
        '{module} {env.TF_TOKEN}"\n'
    )
    estate = load_estate(write(tmp_path, source))
    assert estate.executors["tofu"].kind == "local"


# --- all at once, in order ----------------------------------------------------------------------


def test_every_problem_is_reported_in_one_run_in_line_order(tmp_path: Path) -> None:
    source = """\
[estate]
name = "test"
colour = "blue"

[modules.op]
versions = ["1.0"]
initial = "0.9"

[[channels]]
name = "dev"
max_parallel = 0
soak = "5 parsecs"
checks = ["nope"]

[targets.web-1]
channel = "dve"
executor = "sim"

[executors.sim]
kind = "simulated"
failure_rate = 2.0
"""
    problems = problems_of(tmp_path, source)
    located = [(p.line, p.key) for p in problems]
    assert located == [
        (3, "estate.colour"),
        (7, "modules.op.initial"),
        (9, "channels[0]"),  # 'dev' has no targets: web-1 named 'dve'
        (11, "channels[0].max_parallel"),
        (12, "channels[0].soak"),
        (13, "channels[0].checks"),
        (16, "targets.web-1.channel"),
        (21, "executors.sim.failure_rate"),
    ]
    assert located == sorted(located, key=lambda item: item[0])


def test_cli_style_lines_are_one_per_problem(tmp_path: Path) -> None:
    source = BASE.replace('name = "test"', "name = 1").replace('initial = "1.0"', 'initial = "x"')
    problems = problems_of(tmp_path, source)
    file = tmp_path / "estate.toml"
    assert [str(p) for p in problems] == [
        f"{file}:2: estate.name: expected a string, got an integer",
        f"{file}:21: modules.op.initial: 'x' is not one of versions",
    ]


# --- files --------------------------------------------------------------------------------------


def test_missing_file_is_an_estate_error(tmp_path: Path) -> None:
    with pytest.raises(EstateError) as caught:
        load_estate(tmp_path / "nope.toml")
    (problem,) = caught.value.problems
    assert problem.line == 0
    assert (
        str(problem)
        == f"{tmp_path / 'nope.toml'}: cannot read the estate file: No such file or directory"
    )


def test_undecodable_file_is_an_estate_error(tmp_path: Path) -> None:
    path = tmp_path / "estate.toml"
    path.write_bytes(b"\xff\xfe[estate]\n")
    with pytest.raises(EstateError) as caught:
        load_estate(path)
    assert "cannot read the estate file" in caught.value.problems[0].message


# --- the sample and the model -------------------------------------------------------------------


def test_sample_estate_loads() -> None:
    estate = load_estate(SAMPLE)
    assert estate.name == "acme-platform"
    assert [c.name for c in estate.channels] == ["ephemeral", "dev", "staging", "production"]
    assert [len(c.targets) for c in estate.channels] == [8, 6, 8, 14]
    assert len(estate.targets) == 36
    assert set(estate.modules) >= {"postgres-operator", "pgbouncer"}
    assert estate.modules["postgres-operator"].initial == "1.12.0"
    assert estate.channel("production").gate == "manual"
    assert estate.history_path == SAMPLE.parent / ".sluice" / "history.db"
    assert [(r.module, r.version, r.channels) for r in estate.regressions] == [
        ("postgres-operator", "2.0.0", ("dev",))
    ]


def test_model_is_immutable() -> None:
    estate = load_estate(SAMPLE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        estate.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        estate.channels[0].max_parallel = 100  # type: ignore[misc]
    with pytest.raises(TypeError):
        estate.targets["new"] = estate.targets["eph-101"]  # type: ignore[index]
    with pytest.raises(TypeError):
        estate.targets["eph-101"].vars["region"] = "mars"  # type: ignore[index]
    with pytest.raises(TypeError):
        estate.executors["fleet"].settings["failure_rate"] = 1.0  # type: ignore[index]
    assert isinstance(estate.channels, tuple)
    assert isinstance(estate.channels[0].targets, tuple)


def test_keys_that_only_make_sense_together(tmp_path: Path) -> None:
    text = """
[estate]
name = "x"
[[channels]]
name = "c"
checks = ["p"]
[targets.t]
channel = "c"
executor = "h"
[executors.h]
kind = "http"
url = "http://127.0.0.1:1/deploy"
poll_url = "http://127.0.0.1:1/status/{response.id}"
[checks.p]
source = "prometheus"
url = "http://127.0.0.1:9090"
query = "up"
token = "{env.T}"
username = "u"
[modules.m]
versions = ["1"]
initial = "1"
"""
    path = tmp_path / "e.toml"
    path.write_text(text)
    with pytest.raises(EstateError) as info:
        load_estate(path)
    lines = [str(p) for p in info.value.problems]
    assert any(":13: executors.h.poll_url: poll_url needs poll_field" in line for line in lines), (
        lines
    )
    assert any(":18: checks.p.token: set either token" in line for line in lines), lines
