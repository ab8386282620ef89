"""``sluice check``, ``plan`` and ``drift``: what the estate is and what a rollout would do."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from sluice.cli.common import BadInput, load, split_spec
from sluice.engine.model.estate import Estate
from sluice.engine.model.plan import (
    PLAN_COLUMNS,
    PLAN_NUMERIC,
    Plan,
    PlanError,
    approvals_note,
    make_plan,
    parse_spec,
    plan_rows,
    wave_sizes,
    window_waits,
    windows_note,
)
from sluice.engine.model.units import format_duration
from sluice.engine.rollout.state import ExitCode


def warn_descriptors(estate: Estate) -> None:
    """A warning per channel whose applies cannot fit the fd limit (``run`` would refuse)."""
    from sluice.engine.support import descriptors

    for problem in descriptors.shortfalls(estate, estate.channels, descriptors.hard_limit()):
        print(f"sluice: warning: {problem}", file=sys.stderr)


def cmd_check(args: argparse.Namespace) -> int:
    estate = load(args.estate)
    warn_descriptors(estate)
    waves = sum(len(wave_sizes(c.waves, len(c.targets))) for c in estate.channels)
    print(
        f"{estate.path}: ok — estate {estate.name!r}: {len(estate.targets)} targets in "
        f"{len(estate.channels)} channels ({waves} waves), {len(estate.executors)} executors, "
        f"{len(estate.checks)} checks, {len(estate.modules)} modules"
    )
    return ExitCode.OK


def plan_for(estate: Estate, spec: str, current: dict[str, str] | None = None) -> Plan:
    try:
        module, version = parse_spec(spec)
        return make_plan(estate, module, version, current)
    except PlanError as exc:
        raise BadInput(f"sluice: {exc}") from None


def cmd_plan(args: argparse.Namespace) -> int:
    estate = load(args.estate)
    plan = plan_for(estate, args.spec, current_versions(estate, args.spec))
    warn_descriptors(estate)
    if getattr(args, "preview", False):
        from sluice.cli import iac

        return iac.cmd_preview(args, estate, plan)
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
    else:
        print_plan(estate, plan)
    return ExitCode.OK


def cmd_drift(args: argparse.Namespace) -> int:
    from sluice.cli import iac

    estate = load(args.estate)
    return iac.cmd_drift(args, estate, lambda module: current_versions(estate, module + "@-"))


def current_versions(estate: Estate, spec: str) -> dict[str, str]:
    """Each target's current version of the module, from the history's ledger (if any)."""
    from sluice.engine.store.history import History, HistoryError

    if estate.history_url is None and not estate.history_path.exists():
        return {}
    try:
        history = History.open(estate.history, create=False, readonly=True)
    except HistoryError as exc:
        raise BadInput(f"sluice: {exc}") from None
    try:
        return history.ledger(split_spec(spec)[0])
    finally:
        history.close()


def print_plan(estate: Estate, plan: Plan) -> None:
    from rich.console import Console

    from sluice.engine.app.report import make_table

    console = Console(width=max(Console().width, 112))  # every column, entry and gate too
    applies = sum(len(w.applies) for w in plan.waves)
    channels = len({w.channel.name for w in plan.waves})
    waits = window_waits(plan, estate.windows, time.time())
    rows = plan_rows(plan, waits)
    title = (
        f"{plan.module} → {plan.version} on {estate.name}: {channels} channels, "
        f"{len(plan.waves)} waves, {len(plan.targets)} targets"
    )
    console.print(make_table(title, PLAN_COLUMNS, rows, PLAN_NUMERIC))
    for wave in plan.waves:
        console.print(
            f"  wave {wave.number}: {_names(wave.targets)}",
            overflow="ellipsis",
            no_wrap=True,
            highlight=False,
        )
    people = approvals_note(plan)
    windows = windows_note(plan, waits)
    total = plan.expected_seconds + sum(waits.values())
    console.print(
        f"{applies} applies, {len(plan.targets) - applies} no-op (already at {plan.version}); "
        f"estimated duration {format_duration(total)}"
        + (f" ({windows})" if windows else "")
        + (f"; {people}" if people else ""),
        highlight=False,
    )


def _names(targets: Any) -> str:
    return ", ".join(t.name + (" (no-op)" if t.noop else "") for t in targets)
