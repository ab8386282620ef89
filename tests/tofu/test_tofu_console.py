"""The console's plan review screen on the example, against the real Terraform."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")  # before textual is imported

import pytest
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import OptionList, Static

from sluice.engine.model.estate import load_estate
from sluice.engine.support.clock import Clock
from sluice.tui.app import SluiceApp
from sluice.tui.driver import RolloutDriver, open_session
from sluice.tui.screens.modals import ConfirmScreen
from sluice.tui.screens.plan_review import PlanReviewScreen
from sluice.tui.widgets.estate_tree import EstateTree

pytestmark = pytest.mark.timeout(240)


async def until(
    pilot: Pilot, predicate: Callable[[], object], what: str, timeout: float = 150.0
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.05)


def version_of(directory: Path) -> str:
    return json.loads((directory / "terraform.tfstate").read_text())["outputs"]["app_version"][
        "value"
    ]


async def test_review_screen_shows_groups_outlier_in_danger_and_confirms_destroys(
    example: Path,
) -> None:
    estate_file = example / "estate.toml"
    estate_file.write_text(
        estate_file.read_text().replace(
            '[[channels]]\nname = "staging"\n', '[[channels]]\nname = "staging"\nreview = "plans"\n'
        )
    )
    estate = load_estate(estate_file)
    session = open_session(estate)
    try:
        driver = RolloutDriver(session, Clock())
        app = SluiceApp(driver, offer_resume=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            app.console_screen.start(driver.plan("app", "2.0.0"))
            rollout = driver.rollout
            await until(pilot, lambda: rollout.review is not None, "staging's plan review")
            assert rollout.current_wave == 3 and rollout.state == "review_plans"
            await pilot.press("a")
            await until(pilot, lambda: isinstance(app.screen, PlanReviewScreen), "the screen")
            screen = app.screen
            options = screen.query_one("#review-groups", OptionList)
            labels = [options.get_option_at_index(i).prompt for i in range(options.option_count)]
            assert [str(label) for label in labels] == [
                "1. 2 target(s) · 1 to create, 3 to update",
                "⚠ 2. 1 target(s) · 1 to create, 1 to replace, 2 to update",
            ]
            danger = app.get_css_variables()["error"]
            assert isinstance(labels[1], Text) and danger.lower() in str(labels[1].style).lower()
            changes = screen.query_one("#review-changes", Static)
            assert "targets: stg-eu, stg-us" in str(changes.render())
            await pilot.press("down")
            await pilot.pause()
            shown = str(changes.render())
            assert "OUTLIER: destroys or replaces resources" in shown
            assert "replace (destroy-first)" in shown and "targets: stg-legacy" in shown
            assert version_of(example / "envs" / "stg-legacy") == "1.0.0"  # nothing applied yet

            await pilot.press("a")  # destroys: a second confirmation first
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
            await pilot.press("y")
            await until(
                pilot,
                lambda: rollout.waves[3].status not in ("pending", "applying"),
                "staging's applies",
            )
            assert version_of(example / "envs" / "stg-legacy") == "2.0.0"
            actions = [
                row
                for row in session.history.db.query(
                    "SELECT actor, reason FROM operator_actions WHERE action = 'approve_plans'"
                )
            ]
            assert len(actions) == 1 and "stg-legacy=" in actions[0]["reason"]

            # `r` on staging: the rollback is planned first and the confirmation shows it.
            await until(pilot, lambda: rollout.review is not None, "production's plan review")
            tree = app.screen.query_one(EstateTree)
            tree.move_cursor(tree._by_ref[("wave", 3)])
            await pilot.press("r")
            await until(
                pilot,
                lambda: isinstance(app.screen, ConfirmScreen),
                "the rollback's confirmation",
                120,
            )
            body = app.screen.body
            assert (
                body.startswith("Every target of wave 3")
                and "Rolling back DESTROYS or REPLACES" in body
            )
            assert "targets: stg-legacy" in body and "replace (destroy-first)" in body
            await pilot.press("n")  # not rolled back
            await pilot.pause()
            assert version_of(example / "envs" / "stg-legacy") == "2.0.0"
            rollout.abort("test over")
            await until(pilot, lambda: not driver.active(), "the abort")
    finally:
        session.close()


async def test_the_idle_tree_shows_the_last_drift_result(tmp_path: Path) -> None:
    """What `sluice drift` saved (.sluice/tofu/drift.json) marks the targets not in sync."""
    import shutil

    from terraform_shim import EXAMPLE

    from sluice.engine.app.iac import DriftRow, save_drift
    from sluice.tui.widgets.estate_tree import EstateTree

    shutil.copy(EXAMPLE / "estate.toml", tmp_path / "estate.toml")
    estate = load_estate(tmp_path / "estate.toml")
    save_drift(
        estate,
        [
            DriftRow("dev-2", "app", "2.0.0", "version_mismatch", "ledger says 2.0.0", "1.0.0"),
            DriftRow("dev-1", "app", "2.0.0", "in_sync", "", "2.0.0"),
            DriftRow("eph-1", "app", "1.0.0", "drifted", "1 to change", "1.0.0"),
        ],
        0.0,
    )
    session = open_session(estate)
    try:
        app = SluiceApp(RolloutDriver(session, Clock()), offer_resume=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            tree = app.screen.query_one(EstateTree)
            labels = {
                ref[1]: str(node.label) for ref, node in tree._by_ref.items() if ref[0] == "target"
            }
            assert labels["dev-2"].endswith("≠ version mismatch")
            assert labels["eph-1"].endswith("≠ drifted")
            assert "≠" not in labels["dev-1"] and "≠" not in labels["prod-eu"]
    finally:
        session.close()


#: Two resources; the second's apply waits for a file ``go``: the test sees "1/2 resources".
TWO_STEPS = """
variable "v" {
  type = string
}
resource "terraform_data" "first" {
  input = var.v
}
resource "terraform_data" "second" {
  input      = var.v
  depends_on = [terraform_data.first]
  provisioner "local-exec" {
    command = "while [ ! -f go ]; do sleep 0.1; done"
  }
}
"""


async def test_the_live_tree_shows_resources_applied_and_the_last_drift(
    terraform: dict[str, str], tmp_path: Path
) -> None:
    """While a tofu apply runs its row says "1/2 resources" (from the JSON stream), and the last
    `sluice drift` result is on the live tree too, not only on the idle one."""
    from tofu_helpers import estate_with

    from sluice.engine.app.iac import DriftRow, save_drift

    estate = estate_with(tmp_path, TWO_STEPS)
    save_drift(estate, [DriftRow("t1", "m", "1", "drifted", "1 to change", None)], 0.0)
    session = open_session(estate)
    try:
        driver = RolloutDriver(session, Clock())
        app = SluiceApp(driver, offer_resume=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            app.console_screen.start(driver.plan("m", "2"))
            tree = app.screen.query_one(EstateTree)

            def label() -> str:
                node = tree._by_ref.get(("target", "t1"))
                return str(node.label) if node is not None else ""

            await until(pilot, lambda: "1/2 resources" in label(), "1/2 resources on t1's row")
            assert "≠ drifted" in label() and driver.rollout.targets["t1"].status == "applying"
            (tmp_path / "envs" / "t1" / "go").write_text("")
            await until(pilot, lambda: driver.rollout.targets["t1"].status == "ok", "the apply")
            await until(pilot, lambda: "resources" not in label(), "the finished row")
            assert "≠ drifted" in label()
            await until(pilot, lambda: not driver.active(), "the rollout's end")
    finally:
        session.close()


async def test_t_on_a_reviewed_channel_shows_the_new_plan_and_applies_it_once_approved(
    terraform: dict[str, str], tmp_path: Path
) -> None:
    """The console: the wave's plan approved with a, its apply fails, someone changes the state;
    t plans again and applies nothing until a shows the new plan and it is approved."""
    from test_tofu_retry_review import apply_by_hand, make_estate, runs, state_version

    estate = load_estate(make_estate(tmp_path))
    env = tmp_path / "envs" / "t1"
    session = open_session(estate)
    try:
        driver = RolloutDriver(session, Clock())
        app = SluiceApp(driver, offer_resume=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            app.console_screen.start(driver.plan("m", "2"))
            rollout = driver.rollout
            await until(pilot, lambda: rollout.review is not None, "the wave's plan review")
            await pilot.press("a")
            await until(pilot, lambda: isinstance(app.screen, PlanReviewScreen), "the screen")
            await pilot.press("a")  # creates only: approved at once
            await until(pilot, lambda: rollout.targets["t1"].status == "failed", "the failure")
            apply_by_hand(env, "3")
            (env / "ok").write_text("")

            tree = app.screen.query_one(EstateTree)
            tree.move_cursor(tree._by_ref[("target", "t1")])
            await pilot.press("t")
            await until(
                pilot, lambda: rollout.review is not None and rollout.review.pending(), "review"
            )
            assert runs(env) == 0 and state_version(env) == "3"  # nothing applied yet
            await pilot.press("a")
            await until(pilot, lambda: isinstance(app.screen, PlanReviewScreen), "its screen")
            assert "replace" in str(app.screen.query_one("#review-changes", Static).render())
            await pilot.press("a")  # it replaces: confirmed first
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
            await pilot.press("y")
            await until(pilot, lambda: rollout.targets["t1"].status == "ok", "the approved retry")
            assert runs(env) == 1 and state_version(env) == "2"
            rollout.abort("test over")
            await until(pilot, lambda: not driver.active(), "the abort")
    finally:
        session.close()
