"""Property: whatever is done to the sample estate, loading it gives a model or EstateError."""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.engine.model.estate import Estate, EstateError, parse_estate
from sluice.engine.model.plan import PlanError, make_plan
from sluice.engine.model.units import format_duration

SAMPLE = Path(__file__).resolve().parents[2] / "sample_estate.toml"
SAMPLE_RAW: dict[str, Any] = tomllib.loads(SAMPLE.read_text(encoding="utf-8"))


def _all_keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _all_keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _all_keys(v)}
    return set()


# Values that sit on the validators' edges, next to plain random ones.
TRICKY = [
    "",
    " ",
    "5 parsecs",
    "150%",
    "-5%",
    "0%",
    "100%",
    "nan%",
    "1e400%",
    "9" * 400 + "s",
    "-1s",
    "2s..1s",
    "..",
    "{vars.bastion}",
    "{nope}",
    "{vars}",
    "{env.X}",
    '{env="{target}"}',
    "{response.id}",
    "auto",
    "manual",
    "simulated",
    "local",
    "ssh",
    "http",
    "prometheus",
    "ephemeral",
    "production",
    "postgres-operator",
    "1.12.0",
    "p99_latency",
    "\n",
    "line\nbreak",
    "~nosuchuser/history.db",
]
KEYS = sorted(_all_keys(SAMPLE_RAW))

keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=12))
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([-1, 0, 1, 2**64, -(10**30), 10**40]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=16),
    st.sampled_from(TRICKY),
    st.datetimes(),
    st.dates(),
    st.times(),
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=10,
)

Path_ = tuple[Any, ...]


def _paths(value: Any, at: Path_ = ()) -> list[Path_]:
    """Every place inside ``value`` (dict keys and list items), parents before children."""
    found: list[Path_] = []
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, child in items:
        found.append((*at, key))
        found.extend(_paths(child, (*at, key)))
    return found


def _container(doc: dict[str, Any], path: Path_) -> Any:
    for part in path[:-1]:
        doc = doc[part]
    return doc


@st.composite
def mutated_estates(draw: st.DrawFn) -> dict[str, Any]:
    doc = copy.deepcopy(SAMPLE_RAW)
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        paths = _paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = _container(doc, path)
        op = draw(st.sampled_from(["drop", "rename", "retype", "add", "duplicate"]))
        if op == "drop":
            del parent[path[-1]]
        elif op == "retype":
            parent[path[-1]] = draw(values)
        elif op == "rename" and isinstance(parent, dict):
            new_key = draw(keys)
            parent[new_key] = parent.pop(path[-1])
        elif op == "add":
            target = parent[path[-1]]
            if isinstance(target, dict):
                target[draw(keys)] = draw(values)
            elif isinstance(target, list):
                target.append(draw(values))
            else:
                parent[path[-1]] = draw(values)
        elif op == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[path[-1]]))
    if draw(st.booleans()):
        doc[draw(keys)] = draw(values)
    return doc


@pytest.mark.timeout(120)
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutated_estates())
def test_loader_returns_a_model_or_validation_errors(doc: dict[str, Any]) -> None:
    text = tomli_w.dumps(doc)
    try:
        estate = parse_estate(text, Path("fuzz.toml"))
    except EstateError as exc:
        assert exc.problems, "an EstateError must say what is wrong"
        last_line = text.count("\n") + 1
        for problem in exc.problems:
            assert 0 <= problem.line <= last_line, str(problem)
            assert str(problem).startswith("fuzz.toml"), str(problem)
            # One line per problem, whatever the file's keys and values hold.
            assert "\n" not in str(problem), repr(str(problem))
        lines = [p.line for p in exc.problems]
        assert lines == sorted(lines)
        return
    assert isinstance(estate, Estate)
    # A valid model must also plan: every module at every version, or a PlanError.
    for module in estate.modules.values():
        for version in module.versions:
            try:
                plan = make_plan(estate, module.name, version)
            except PlanError:
                continue
            json.dumps(plan.to_dict())
            format_duration(plan.expected_seconds)
            assert len(plan.targets) == sum(
                1 for t in estate.targets.values() if t.runs(module.name)
            )


def test_unmutated_sample_round_trips_through_tomli_w() -> None:
    # The property's baseline: the sample written back by tomli_w is still a valid estate.
    estate = parse_estate(tomli_w.dumps(SAMPLE_RAW), Path("fuzz.toml"))
    assert len(estate.targets) == 36
