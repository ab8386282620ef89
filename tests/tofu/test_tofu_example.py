"""examples/tofu end to end, through the command line, against the real Terraform.

Each test takes a fresh copy of the example with app 1.0.0 already applied in its 13
environments (conftest ``example``) and runs ``sluice`` on it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from terraform_shim import tf

from sluice.cli import main
from sluice.engine.store.history import History

pytestmark = pytest.mark.timeout(300)


def sluice(*args: str) -> int:
    return main(list(args))


def output_version(directory: Path) -> str:
    state = json.loads((directory / "terraform.tfstate").read_text())
    return str(state["outputs"]["app_version"]["value"])


def test_preview_groups_the_estate_and_flags_the_replace_outlier(
    example: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    estate = str(example / "estate.toml")
    assert sluice("plan", estate, "app@2.0.0", "--preview", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    groups = data["groups"]
    assert [len(g["targets"]) for g in groups] == [12, 1]
    main_group, outlier = groups
    assert not main_group["outlier"] and not main_group["destroys"]
    assert {r["action"] for r in main_group["resources"]} == {"create", "update"}
    assert outlier["targets"] == ["stg-legacy"] and data["outliers"] == ["stg-legacy"]
    assert outlier["outlier_reasons"] == [
        "destroys or replaces resources",
        "differs from the rest of staging",
    ]
    database = next(r for r in outlier["resources"] if r["address"].endswith(".database"))
    assert database["action"] == "replace (destroy-first)"
    assert database["reason"] == "replace_because_cannot_update"
    assert "triggers_replace" in database["paths"]
    dns = next(r for r in main_group["resources"] if ".dns" in r["address"])
    assert dns["address"] == 'module.app.terraform_data.dns["{target}"]'
    assert len(data["plan_sha256"]) == 13 and not data["errors"]
    # Nothing was applied by a preview.
    assert output_version(example / "envs" / "eph-1") == "1.0.0"

    assert sluice("plan", estate, "app@2.0.0", "--preview") == 0
    text = capsys.readouterr().out
    assert "13 target(s) planned" in text and "2 distinct plan(s), 1 outlier group(s)" in text
    assert "group 2 · 1 target(s) · 1 to create, 1 to replace, 2 to update" in text
    assert "⚠ OUTLIER: destroys or replaces resources; differs from the rest of staging" in text
    assert "-/+ module.app.terraform_data.database  replace (destroy-first)" in text


def test_rollout_in_waves_with_plan_review_then_drift(
    example: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    estate = str(example / "estate.toml")
    # Headless without --approve: production's first wave stops at its plan review (exit 4).
    assert sluice("run", estate, "app@2.0.0", "--headless") == 4
    out = capsys.readouterr().out
    assert "plans of wave 4 for review: 1 plan file(s)" in out
    assert "they await review" in out
    assert output_version(example / "envs" / "stg-legacy") == "2.0.0"
    assert output_version(example / "envs" / "prod-eu") == "1.0.0"

    assert sluice("resume", estate, "--headless", "--approve") == 0
    out = capsys.readouterr().out
    assert "● approve_plans wave 4 by" in out and "● approve_plans wave 5 by" in out
    for env in (example / "envs").iterdir():
        assert output_version(env) == "2.0.0", env.name
    history = History.open(example / ".sluice" / "history.db", create=False)
    try:
        actions = list(
            history.db.query(
                "SELECT action, reason, wave FROM operator_actions WHERE action = 'approve_plans'"
            )
        )
        events = list(history.db.query("SELECT data FROM events WHERE kind = 'plans_reviewed'"))
    finally:
        history.close()
    assert [a["wave"] for a in actions] == [4, 5]
    # The first run's review of wave 4 stopped unapproved; the resume planned it again.
    reviewed = [json.loads(e["data"]) for e in events]
    assert [r["wave"] for r in reviewed] == [4, 4, 5]
    reviewed = reviewed[1]
    assert set(reviewed["plans"]) == {"prod-eu"}
    assert f"prod-eu={reviewed['plans']['prod-eu'][:16]}" in actions[0]["reason"]

    assert sluice("drift", estate) == 0
    assert "13 in sync" in capsys.readouterr().out
    # Someone applies the old version by hand: drift says so (exit 1), ledger vs state.
    tf(example / "envs" / "dev-2", "init", "-input=false", "-var", "app_version=1.0.0")
    tf(
        example / "envs" / "dev-2",
        "apply",
        "-auto-approve",
        "-input=false",
        "-var",
        "app_version=1.0.0",
    )
    assert sluice("drift", estate, "--module", "app", "--json") == 1
    rows = {r["target"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["dev-2"]["status"] == "version_mismatch"
    assert rows["dev-2"]["state_version"] == "1.0.0" and rows["dev-2"]["ledger_version"] == "2.0.0"
    assert "ledger says 2.0.0, state says 1.0.0" in rows["dev-2"]["detail"]
    assert {r["status"] for n, r in rows.items() if n != "dev-2"} == {"in_sync"}
    saved = json.loads((example / ".sluice" / "tofu" / "drift.json").read_text())
    assert saved["app/dev-2"]["status"] == "version_mismatch"
    assert sluice("drift", estate, "--module", "nope") == 2


def test_review_that_replaces_needs_approve_destroy(
    example: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    estate = example / "estate.toml"
    text = estate.read_text().replace(
        '[[channels]]\nname = "staging"\n', '[[channels]]\nname = "staging"\nreview = "plans"\n'
    )
    estate.write_text(text)
    assert sluice("run", str(estate), "app@2.0.0", "--headless", "--approve") == 4
    out = capsys.readouterr().out
    assert "⚠ OUTLIER: destroys or replaces resources" in out
    assert "sluice resume --approve-destroy" in out
    assert output_version(example / "envs" / "stg-eu") == "1.0.0"  # nothing of staging applied
    assert (
        sluice("resume", str(estate), "--headless", "--approve-destroy", "--until-wave", "3") == 4
    )
    assert "--approve-destroy: " in capsys.readouterr().out
    assert output_version(example / "envs" / "stg-legacy") == "2.0.0"


def test_a_killed_sluice_leaves_the_apply_running_and_resume_adopts_it(example: Path) -> None:
    """The apply runs in the spool (no pipe to sluice): kill -9 `sluice run` mid-apply, the apply
    finishes on its own, and `sluice resume` records its outcome without running it again."""
    # A slow apply: app 2.0.0's monitor gets a provisioner that counts its runs in this copy.
    module = example / "modules" / "app" / "2.0.0" / "main.tf"
    module.write_text(
        module.read_text().replace(
            'resource "terraform_data" "monitor" {\n',
            'resource "terraform_data" "monitor" {\n'
            '  provisioner "local-exec" {\n'
            '    command = "echo start >> runs; sleep 4; echo done >> runs"\n  }\n',
        )
    )
    wave = [example / "envs" / f"eph-{n}" for n in range(1, 5)]
    runs = {env: env / "runs" for env in wave}
    command = [sys.executable, "-m", "sluice.cli", "run", str(example / "estate.toml"), "app@2.0.0"]
    driver = subprocess.Popen(
        [*command, "--headless", "--until-wave", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=os.environ.copy(),
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not runs[wave[0]].exists():
        assert time.monotonic() < deadline and driver.poll() is None, "the apply never started"
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait(30)
    assert driver.stdout is not None
    driver.stdout.close()  # the reader is gone
    status = example / ".sluice" / "applies" / "1" / "eph-1.1.status"
    deadline = time.monotonic() + 120
    while not status.exists():
        assert time.monotonic() < deadline, "the apply did not finish after sluice was killed"
        time.sleep(0.1)
    assert status.read_text() == "0\n" and output_version(wave[0]) == "2.0.0"
    assert runs[wave[0]].read_text() == "start\ndone\n"

    assert sluice("resume", str(example / "estate.toml"), "--headless", "--until-wave", "1") == 4
    for env in wave:  # adopted or, if its apply had not started, applied once now
        assert runs[env].read_text() == "start\ndone\n", env.name
        assert output_version(env) == "2.0.0"
    history = History.open(example / ".sluice" / "history.db", create=False)
    try:
        rows = list(
            history.db.query(
                "SELECT kind, data FROM events WHERE kind IN ('apply_adopted', 'apply_finished')"
            )
        )
    finally:
        history.close()
    adopted = [json.loads(r["data"]) for r in rows if r["kind"] == "apply_adopted"]
    finished = [json.loads(r["data"]) for r in rows if r["kind"] == "apply_finished"]
    assert "eph-1" in {a["target"] for a in adopted}
    eph1 = [f for f in finished if f["target"] == "eph-1"]
    assert len(eph1) == 1 and eph1[0]["outcome"] == "ok" and "adopted" in eph1[0]["reason"]
    assert "applied" in eph1[0]["reason"]
