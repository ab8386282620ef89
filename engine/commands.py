"""What each ``sluice`` command does; ``engine.cli`` parses, this module acts."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from engine.cli import EXIT_BAD_INPUT, EXIT_OK, error
from engine.estate import Estate, EstateError, load_estate
from engine.plan import Plan, PlanError, make_plan, parse_spec
from engine.units import format_duration


class BadInput(Exception):
    """A problem with the user's input; its lines are printed and sluice exits 2."""

    def __init__(self, *lines: str):
        super().__init__("\n".join(lines))
        self.lines = lines


def load(path: str) -> Estate:
    try:
        return load_estate(path)
    except EstateError as exc:
        raise BadInput(*map(str, exc.problems)) from None


def dispatch(args: argparse.Namespace) -> int:
    handlers = {
        None: cmd_console,
        "check": cmd_check,
        "plan": cmd_plan,
        "run": cmd_run,
    }
    handler = handlers.get(args.command)
    if handler is None:
        error(f"`sluice {args.command}` is not available in this build yet")
        return EXIT_BAD_INPUT
    try:
        return handler(args)
    except BadInput as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return EXIT_BAD_INPUT


def cmd_check(args: argparse.Namespace) -> int:
    estate = load(args.estate)
    waves = sum(len(c.waves) for c in estate.channels)
    print(
        f"{estate.path}: ok — estate {estate.name!r}: {len(estate.targets)} targets in "
        f"{len(estate.channels)} channels ({waves} waves), {len(estate.executors)} executors, "
        f"{len(estate.checks)} checks, {len(estate.modules)} modules"
    )
    return EXIT_OK


def plan_for(estate: Estate, spec: str, current: dict[str, str] | None = None) -> Plan:
    try:
        module, version = parse_spec(spec)
        return make_plan(estate, module, version, current)
    except PlanError as exc:
        raise BadInput(f"sluice: {exc}") from None


def cmd_plan(args: argparse.Namespace) -> int:
    estate = load(args.estate)
    plan = plan_for(estate, args.spec, current_versions(estate, args.spec))
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
    else:
        print_plan(estate, plan)
    return EXIT_OK


def current_versions(estate: Estate, spec: str) -> dict[str, str]:
    """Each target's current version of the module: the ledger once history exists."""
    return {}


def print_plan(estate: Estate, plan: Plan) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 100))
    applies = sum(len(w.applies) for w in plan.waves)
    noops = len(plan.targets) - applies
    channels = len({w.channel.name for w in plan.waves})
    table = Table(
        title=(
            f"{plan.module} → {plan.version} on {estate.name}: {channels} channels, "
            f"{len(plan.waves)} waves, {len(plan.targets)} targets"
        ),
        title_justify="left",
    )
    columns = ("wave", "channel", "n", "change", "par", "budget", "gate", "soak", "blast", "ETA")
    rows = []
    elapsed = 0.0
    for wave in plan.waves:
        elapsed += wave.expected_seconds
        froms = sorted({t.from_version for t in wave.applies})
        rows.append(
            (
                str(wave.number),
                wave.name,
                str(len(wave.targets)),
                f"{','.join(froms)} → {plan.version}" if froms else "no-op",
                str(wave.channel.max_parallel),
                str(wave.failure_budget),
                wave.channel.gate,
                format_duration(wave.channel.soak),
                f"{wave.blast_radius:.0%}",
                f"+{format_duration(elapsed)}",
                _names(wave.targets),
            )
        )
    for i, column in enumerate(columns):
        width = max(len(column), *(len(row[i]) for row in rows))
        numeric = column in {"wave", "n", "par", "budget", "blast", "ETA"}
        table.add_column(
            column, justify="right" if numeric else "left", min_width=width, no_wrap=True
        )
    for row in rows:
        table.add_row(*row[:-1])
    console.print(table)
    for wave, row in zip(plan.waves, rows, strict=True):
        console.print(
            f"  wave {wave.number}: {row[-1]}", overflow="ellipsis", no_wrap=True, highlight=False
        )
    manual = sum(1 for w in plan.waves if w.channel.gate == "manual")
    note = f"; {manual} manual gate(s) wait for approval, not counted" if manual else ""
    console.print(
        f"{applies} applies, {noops} no-op (already at {plan.version}); "
        f"estimated duration {format_duration(plan.expected_seconds)}{note}"
    )


def _names(targets: Any) -> str:
    return ", ".join(t.name + (" (no-op)" if t.noop else "") for t in targets)


def cmd_console(args: argparse.Namespace) -> int:
    estate = load(args.estate)
    error(f"the console is not built yet; try `sluice plan {estate.path} MODULE@VERSION`")
    return EXIT_BAD_INPUT


def cmd_run(args: argparse.Namespace) -> int:
    estate = load(args.estate)
    plan = plan_for(estate, args.spec, current_versions(estate, args.spec))
    if not args.headless:
        raise BadInput("sluice: the console is not built yet; add --headless")
    return _drive(estate, plan, args)


def _drive(estate: Estate, plan: Plan, args: argparse.Namespace, **rollout_args: Any) -> int:
    import asyncio

    from engine.clock import Clock
    from engine.headless import JsonPrinter, TextPrinter, run_headless
    from engine.rollout import Rollout

    if args.until_wave is not None and args.until_wave > len(plan.waves):
        raise BadInput(
            f"sluice: --until-wave {args.until_wave}: the plan has {len(plan.waves)} waves"
        )

    async def go() -> int:
        rollout = Rollout(
            estate,
            plan,
            clock=Clock(args.time_scale),
            interactive=False,
            approve=args.approve,
            until_wave=args.until_wave,
            **rollout_args,
        )
        printer = JsonPrinter() if args.json else TextPrinter()
        outcome = await run_headless(rollout, printer)
        return outcome.exit_code

    return asyncio.run(go())
