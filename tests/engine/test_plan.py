"""The plan: waves, no-ops, blast radius and ETA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sluice.engine.model.estate import Estate, load_estate, parse_estate
from sluice.engine.model.plan import (
    DEFAULT_APPLY_SECONDS,
    Plan,
    PlanError,
    make_plan,
    parse_spec,
    wave_sizes,
)
from sluice.engine.model.units import parse_share

SAMPLE = Path(__file__).resolve().parents[2] / "sample_estate.toml"

HEAD = """\
[estate]
name = "plan-test"

[executors.sim]
kind = "simulated"
duration = "2s..4s"

[modules.op]
versions = ["1.0", "2.0", "3.0"]
initial = "1.0"
"""


def channel(name: str, *, waves: str = "", max_parallel: int = 1, soak: str = "0s") -> str:
    lines = [
        "[[channels]]",
        f'name = "{name}"',
        f"max_parallel = {max_parallel}",
        f'soak = "{soak}"',
    ]
    if waves:
        lines.append(f"waves = {waves}")
    return "\n".join(lines) + "\n\n"


def targets(channel_name: str, count: int, *, prefix: str = "", executor: str = "sim") -> str:
    prefix = prefix or channel_name
    return "".join(
        f'[targets.{prefix}-{i:03d}]\nchannel = "{channel_name}"\nexecutor = "{executor}"\n\n'
        for i in range(1, count + 1)
    )


def estate_of(*parts: str) -> Estate:
    return parse_estate(HEAD + "\n" + "".join(parts), Path("plan-test.toml"))


def shares(*raw: int | str) -> tuple:
    return tuple(parse_share(r, allow_zero=False) for r in raw)


# --- wave split ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("waves", "size", "expected"),
    [
        (("100%",), 1, [1]),
        ((1, "25%", "100%"), 1, [1]),
        ((1, "50%", "100%"), 3, [1, 1, 1]),
        ((1, "10%", "50%", "100%"), 100, [1, 9, 40, 50]),
        ((1, "25%", "100%"), 2, [1, 1]),
        ((1, "25%", "100%"), 14, [1, 3, 10]),
        ((2, "100%"), 8, [2, 6]),
        ((1, "25%"), 10, [1, 9]),  # waves end below 100%: the last one takes the rest
        ((1,), 5, [5]),
        (("100%",), 0, []),
    ],
)
def test_wave_sizes(waves: tuple, size: int, expected: list[int]) -> None:
    sizes = wave_sizes(shares(*waves), size)
    assert sizes == expected
    assert sum(sizes) == size
    assert all(s >= 1 for s in sizes)


def test_one_target_is_one_wave() -> None:
    plan = make_plan(
        estate_of(channel("dev", waves='[1, "25%", "100%"]'), targets("dev", 1)), "op", "2.0"
    )
    assert [len(w.targets) for w in plan.waves] == [1]
    assert plan.waves[0].name == "dev 1/1"


def test_three_targets_with_canary_and_halves() -> None:
    plan = make_plan(
        estate_of(channel("dev", waves='[1, "50%", "100%"]'), targets("dev", 3)), "op", "2.0"
    )
    assert [[t.name for t in w.targets] for w in plan.waves] == [
        ["dev-001"],
        ["dev-002"],
        ["dev-003"],
    ]
    assert [w.name for w in plan.waves] == ["dev 1/3", "dev 2/3", "dev 3/3"]


def test_hundred_targets_with_percentages() -> None:
    plan = make_plan(
        estate_of(channel("prod", waves='[1, "10%", "50%", "100%"]'), targets("prod", 100)),
        "op",
        "2.0",
    )
    assert [len(w.targets) for w in plan.waves] == [1, 9, 40, 50]
    # Every target once, in the estate's order.
    assert [t.name for t in plan.targets] == [f"prod-{i:03d}" for i in range(1, 101)]


def test_channel_smaller_than_its_waves_list() -> None:
    plan = make_plan(
        estate_of(channel("dev", waves='[1, "25%", "100%"]'), targets("dev", 2)), "op", "2.0"
    )
    assert [len(w.targets) for w in plan.waves] == [1, 1]
    # Named after the waves that exist, not the three the list asks for.
    assert [w.name for w in plan.waves] == ["dev 1/2", "dev 2/2"]


def test_last_wave_takes_the_rest_when_waves_end_below_100_percent() -> None:
    plan = make_plan(estate_of(channel("dev", waves='[1, "25%"]'), targets("dev", 10)), "op", "2.0")
    assert [len(w.targets) for w in plan.waves] == [1, 9]


def test_waves_are_numbered_across_channels_in_channel_order() -> None:
    plan = make_plan(
        estate_of(
            channel("dev"),
            channel("prod", waves='[1, "100%"]'),
            targets("prod", 3),  # declared first: channel order still wins
            targets("dev", 2),
        ),
        "op",
        "2.0",
    )
    assert [(w.number, w.channel.name, len(w.targets)) for w in plan.waves] == [
        (1, "dev", 2),
        (2, "prod", 1),
        (3, "prod", 2),
    ]


def test_targets_not_running_the_module_are_left_out() -> None:
    estate = estate_of(
        channel("dev"),
        targets("dev", 2),
        '[targets.other]\nchannel = "dev"\nexecutor = "sim"\nmodules = ["op2"]\n\n'
        '[modules.op2]\nversions = ["1"]\ninitial = "1"\n\n',
    )
    plan = make_plan(estate, "op", "2.0")
    assert [t.name for t in plan.targets] == ["dev-001", "dev-002"]
    assert plan.estate_targets == 2
    assert [t.name for t in make_plan(estate, "op2", "1").targets] == [
        "dev-001",
        "dev-002",
        "other",
    ]


# --- versions and no-ops ------------------------------------------------------------------------


def test_from_version_is_initial_or_current() -> None:
    estate = estate_of(channel("dev"), targets("dev", 2))
    plan = make_plan(estate, "op", "3.0", current={"dev-002": "2.0"})
    assert [(t.name, t.from_version, t.to_version) for t in plan.targets] == [
        ("dev-001", "1.0", "3.0"),
        ("dev-002", "2.0", "3.0"),
    ]


def test_noop_targets_are_shown_not_applied_and_not_timed() -> None:
    estate = estate_of(channel("dev", max_parallel=1, soak="10s"), targets("dev", 3))
    full = make_plan(estate, "op", "2.0")
    plan = make_plan(estate, "op", "2.0", current={"dev-002": "2.0"})
    (wave,) = plan.waves
    assert [(t.name, t.noop) for t in wave.targets] == [
        ("dev-001", False),
        ("dev-002", True),
        ("dev-003", False),
    ]
    assert [t.name for t in wave.applies] == ["dev-001", "dev-003"]
    # Simulated 2s..4s → 3 s per apply, one at a time, then a 10 s soak.
    assert full.expected_seconds == pytest.approx(3 * 3 + 10)
    assert plan.expected_seconds == pytest.approx(2 * 3 + 10)
    as_json = plan.to_dict()["waves"][0]["targets"]  # type: ignore[index]
    assert as_json[1] == {"name": "dev-002", "from": "2.0", "to": "2.0", "noop": True}


def test_wave_of_only_noops_takes_no_time() -> None:
    estate = estate_of(channel("dev", soak="10m"), targets("dev", 2))
    plan = make_plan(estate, "op", "2.0", current={"dev-001": "2.0", "dev-002": "2.0"})
    assert plan.waves[0].applies == ()
    assert plan.expected_seconds == 0.0


# --- blast radius, budget and ETA ---------------------------------------------------------------


def test_blast_radius_is_cumulative() -> None:
    plan = make_plan(
        estate_of(
            channel("dev"),
            channel("prod", waves='[1, "100%"]'),
            targets("dev", 1),
            targets("prod", 3),
        ),
        "op",
        "2.0",
    )
    assert [w.blast_radius for w in plan.waves] == pytest.approx([0.25, 0.5, 1.0])


def test_failure_budget_is_per_wave() -> None:
    source = channel("dev", waves='[2, "100%"]').replace(
        "max_parallel", 'max_failures = "25%"\nmax_parallel'
    )
    plan = make_plan(estate_of(source, targets("dev", 10)), "op", "2.0")
    # 25% of 2 rounds down to 0; 25% of 8 is 2.
    assert [w.failure_budget for w in plan.waves] == [0, 2]


def test_eta_from_concurrency_apply_durations_and_soak() -> None:
    estate = estate_of(
        channel("dev", max_parallel=2, soak="30s"),
        channel("prod", waves='[1, "100%"]', max_parallel=4, soak="1m"),
        targets("dev", 3),
        targets("prod", 5, executor="slow"),
        '[executors.slow]\nkind = "simulated"\nduration = "1s..2s"\nexpected_duration = "10s"\n\n',
    )
    plan = make_plan(estate, "op", "2.0")
    # dev: 3 applies of (2+4)/2 = 3 s, 2 at a time → 2 rounds = 6 s, + 30 s soak = 36 s.
    # prod 1/2: 1 apply of 10 s (expected_duration wins) + 60 s soak = 70 s.
    # prod 2/2: 4 applies, 4 at a time → 1 round = 10 s, + 60 s = 70 s.
    assert [w.expected_seconds for w in plan.waves] == pytest.approx([36.0, 70.0, 70.0])
    assert plan.expected_seconds == pytest.approx(176.0)
    assert plan.to_dict()["expected_seconds"] == 176.0


def test_eta_takes_the_slowest_executor_of_a_wave() -> None:
    estate = estate_of(
        channel("dev", max_parallel=4, soak="0s"),
        targets("dev", 2),
        targets("dev", 1, prefix="real", executor="tofu"),
        '[executors.tofu]\nkind = "local"\napply = "tofu apply {target}"\n\n',
    )
    plan = make_plan(estate, "op", "2.0")
    assert plan.expected_seconds == pytest.approx(DEFAULT_APPLY_SECONDS)


# --- errors -------------------------------------------------------------------------------------


def test_unknown_module_is_a_plan_error() -> None:
    estate = estate_of(channel("dev"), targets("dev", 1))
    with pytest.raises(PlanError, match="unknown module 'nope'.*op"):
        make_plan(estate, "nope", "1.0")


def test_unknown_version_is_a_plan_error() -> None:
    estate = estate_of(channel("dev"), targets("dev", 1))
    with pytest.raises(PlanError, match=r"op has no version '9\.9' \(known: 1\.0, 2\.0, 3\.0\)"):
        make_plan(estate, "op", "9.9")


@pytest.mark.parametrize("spec", ["op", "op@", "@2.0", ""])
def test_bad_spec_is_a_plan_error(spec: str) -> None:
    with pytest.raises(PlanError, match="expected MODULE@VERSION"):
        parse_spec(spec)


def test_parse_spec() -> None:
    assert parse_spec("postgres-operator@2.0.0") == ("postgres-operator", "2.0.0")
    assert parse_spec("mod@1.0@rc") == ("mod", "1.0@rc")


# --- the sample ---------------------------------------------------------------------------------


def test_sample_plan_for_postgres_operator_2_0_0() -> None:
    estate = load_estate(SAMPLE)
    plan = make_plan(estate, "postgres-operator", "2.0.0")
    assert len({w.channel.name for w in plan.waves}) == 4
    assert len(plan.waves) == 7
    assert len(plan.targets) == 36
    assert [w.channel.name for w in plan.waves] == [
        "ephemeral",
        "dev",
        "staging",
        "staging",
        "production",
        "production",
        "production",
    ]
    assert [len(w.targets) for w in plan.waves] == [8, 6, 2, 6, 1, 3, 10]
    expected_order = [name for c in estate.channels for name in c.targets]
    assert [t.name for t in plan.targets] == expected_order
    assert all(t.from_version == "1.12.0" and t.to_version == "2.0.0" for t in plan.targets)
    assert plan.waves[-1].blast_radius == pytest.approx(1.0)
    radii = [w.blast_radius for w in plan.waves]
    assert radii == sorted(radii)
    document = json.loads(json.dumps(plan.to_dict()))
    assert len(document["waves"]) == 7


# --- a recorded plan, read back ----------------------------------------------------------------


def test_a_plan_reads_back_from_its_record() -> None:
    estate = load_estate(SAMPLE)
    plan = make_plan(estate, "postgres-operator", "2.0.0")
    again = Plan.from_dict(estate, json.loads(json.dumps(plan.to_dict())))
    assert again.to_dict() == plan.to_dict()  # (the record rounds blast radius and ETA)
    assert again.targets == plan.targets
    assert [w.channel for w in again.waves] == [w.channel for w in plan.waves]


def test_an_older_record_gives_a_wave_its_place_from_its_name() -> None:
    estate = load_estate(SAMPLE)
    plan = make_plan(estate, "postgres-operator", "2.0.0")
    record = plan.to_dict()
    for wave in record["waves"]:  # type: ignore[union-attr]
        del wave["index_in_channel"], wave["waves_in_channel"]
    places = [(w.number, w.name, w.index_in_channel, w.waves_in_channel) for w in plan.waves]
    again = Plan.from_dict(estate, record).waves
    assert [(w.number, w.name, w.index_in_channel, w.waves_in_channel) for w in again] == places


def test_a_record_naming_a_target_no_longer_in_the_estate_is_refused() -> None:
    estate = load_estate(SAMPLE)
    record = make_plan(estate, "postgres-operator", "2.0.0").to_dict()
    record["waves"][0]["targets"][0]["name"] = "gone-1"  # type: ignore[index]
    with pytest.raises(PlanError, match="target 'gone-1' of the recorded plan"):
        Plan.from_dict(estate, record)
    with pytest.raises(PlanError, match="wave 9: the plan has 7 waves"):
        make_plan(estate, "postgres-operator", "2.0.0").wave(9)
