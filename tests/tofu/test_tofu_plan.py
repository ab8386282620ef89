"""Reading the tool's output without running it: the -json stream, plans, grouping, locks."""

from __future__ import annotations

from sluice.engine.executors.tofu_plan import (
    StreamProgress,
    changed_paths,
    destroys,
    group_plans,
    lock_reason,
    normalise,
    parse_line,
    plan_hash,
)

LOCK_DETAIL = """Error message: resource temporarily unavailable
Lock Info:
  ID:        0647fc72-1b2c-4d5e-8f90-123456789abc
  Path:      terraform.tfstate
  Operation: OperationTypeApply
  Who:       alice@laptop
  Version:   1.15.5
  Created:   2026-12-01 10:02:03.456 +0000 UTC
  Info:
"""


def change(address: str, actions: list[str], before: object, after: object, **extra: object):
    return {
        "address": address,
        "change": {"actions": actions, "before": before, "after": after},
        **extra,
    }


def test_lock_reason_names_holder_time_id_and_operation() -> None:
    reason = lock_reason(LOCK_DETAIL)
    assert reason.startswith("state locked by alice@laptop since 10:02 2026-12-01 (lock 0647fc72…)")
    assert "operation apply" in reason


def test_stream_progress_counts_and_names_the_failed_resource() -> None:
    progress = StreamProgress()
    messages = [
        {"type": "version", "terraform": "1.15.5", "@message": "Terraform 1.15.5"},
        {"type": "planned_change", "change": {"action": "create"}, "@message": "a: Plan to create"},
        {"type": "planned_change", "change": {"action": "read"}, "@message": "d: read"},
        {"type": "apply_complete", "@message": "a: Creation complete"},
        {"type": "apply_errored", "hook": {"resource": {"addr": "terraform_data.b"}}},
        {
            "type": "diagnostic",
            "@message": "Error: local-exec provisioner error",
            "diagnostic": {
                "severity": "error",
                "summary": "local-exec provisioner error",
                "detail": "Error running command 'exit 3': exit status 3.",
                "address": "terraform_data.b",
            },
        },
    ]
    shown = [progress.feed(m) for m in messages]
    assert progress.tool == "terraform" and progress.planned == 1
    assert shown[3] == "[1/1 resources] a: Creation complete"
    assert progress.reason("apply") == (
        "apply failed (1/1 resources applied): terraform_data.b: local-exec provisioner error: "
        "Error running command 'exit 3': exit status 3."
    )
    tofu = StreamProgress()
    tofu.feed({"type": "version", "tofu": "1.9.0"})
    assert tofu.tool == "tofu"


def test_lock_and_stale_diagnostics_become_their_own_reasons() -> None:
    locked = StreamProgress()
    locked.feed(
        {
            "type": "diagnostic",
            "diagnostic": {
                "severity": "error",
                "summary": "Error acquiring the state lock",
                "detail": LOCK_DETAIL,
            },
        }
    )
    assert locked.reason("plan").startswith("state locked by alice@laptop")
    stale = StreamProgress()
    stale.feed(
        {
            "type": "diagnostic",
            "diagnostic": {"severity": "error", "summary": "Saved plan is stale"},
        }
    )
    assert "plan is stale" in stale.reason("apply") and "re-plan" in stale.reason("apply")


def test_parse_line_ignores_what_is_not_a_ui_message() -> None:
    assert parse_line('{"type": "version"}') == {"type": "version"}
    assert parse_line("plain text") is None and parse_line("{broken") is None
    assert parse_line('{"no": "type"}') is None


def test_changed_paths_keep_paths_not_values() -> None:
    before = {"input": {"name": "a", "size": "small", "tags": ["x", "y"]}, "id": "1"}
    after = {"input": {"name": "a", "size": "big", "tags": ["x", "z"]}, "id": "1"}
    assert changed_paths(before, after) == ["input/size", "input/tags/1"]


def test_normalise_drops_noop_and_read_replaces_names_and_splits_replace() -> None:
    plan = {
        "resource_changes": [
            change('m.dns["eph-1"]', ["update"], {"v": "eph-1.x"}, {"v": "eph-1.y"}),
            change(
                "m.db",
                ["delete", "create"],
                {"e": "14"},
                {"e": "15"},
                action_reason="replace_because_cannot_update",
            ),
            change("m.fast", ["create", "delete"], {"e": 1}, {"e": 2}),
            change("m.same", ["no-op"], {}, {}),
            change("data.x", ["read"], None, {}),
        ],
        "output_changes": {"v": {"actions": ["update"]}, "w": {"actions": ["no-op"]}},
    }
    got = normalise(plan, ["eph-1"])
    actions = {r["address"]: r["action"] for r in got["resources"]}
    assert actions == {
        'm.dns["{target}"]': "update",
        "m.db": "replace (destroy-first)",
        "m.fast": "replace (create-first)",
    }
    db = next(r for r in got["resources"] if r["address"] == "m.db")
    assert db["reason"] == "replace_because_cannot_update" and db["paths"] == ["e"]
    assert got["outputs"] == [{"name": "v", "action": "update"}]
    assert destroys(got)
    # Another target's identical change hashes the same; its values never mattered.
    other = normalise(
        {"resource_changes": [change('m.dns["eph-2"]', ["update"], {"v": "q"}, {"v": "r"})]},
        ["eph-2"],
    )
    mine = normalise(
        {"resource_changes": [change('m.dns["eph-1"]', ["update"], {"v": "a"}, {"v": "b"})]},
        ["eph-1"],
    )
    assert plan_hash(other) == plan_hash(mine)


def test_aliases_are_normalised_too() -> None:
    plan = {"resource_changes": [change("m.zone_eu-west-1", ["create"], None, {"a": 1})]}
    assert normalise(plan, ["prod-eu", "eu-west-1"])["resources"][0]["address"] == "m.zone_{target}"


def test_groups_largest_first_and_outliers() -> None:
    update = {"resources": [{"address": "a", "action": "update", "paths": ["x"]}], "outputs": []}
    replace = {
        "resources": [{"address": "a", "action": "replace (destroy-first)", "paths": []}],
        "outputs": [],
    }
    extra = {"resources": [{"address": "b", "action": "create", "paths": []}], "outputs": []}
    plans = {"d1": update, "d2": update, "s1": update, "s2": update, "s3": replace, "p1": extra}
    channel = {"d1": "dev", "d2": "dev", "s1": "stg", "s2": "stg", "s3": "stg", "p1": "prod"}
    groups = group_plans(plans, channel)
    assert [g.targets for g in groups] == [["d1", "d2", "s1", "s2"], ["p1"], ["s3"]]
    assert groups[0].outlier == []
    assert groups[1].outlier == []  # the only plan of its channel: nothing to differ from
    assert groups[2].outlier == ["destroys or replaces resources", "differs from the rest of stg"]
    assert groups[2].to_dict()["destroys"] is True


def test_apply_progress_lines_and_what_the_console_reads_of_them() -> None:
    from sluice.engine.executors.tofu_plan import progress_of

    progress = StreamProgress()
    progress.feed({"type": "planned_change", "change": {"action": "create"}, "@message": "p"})
    progress.feed({"type": "planned_change", "change": {"action": "update"}, "@message": "p"})
    started = progress.feed({"type": "apply_start", "@message": "a: Creating..."})
    done = progress.feed({"type": "apply_complete", "@message": "a: Creation complete"})
    assert started == "[0/2 resources] a: Creating..."
    assert progress_of(str(started)) == "0/2 resources"
    assert progress_of(str(done)) == "1/2 resources"
    assert progress_of("[1/2] something a script printed") is None
