"""``sluice plan … --preview`` and ``sluice drift``: the IaC commands (see docs/tofu.md)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from sluice.engine.model.estate import Estate
from sluice.engine.rollout.state import ExitCode


def progress_printer(verb: str) -> Any:
    """A one-line progress bar on stderr when it is a terminal, else nothing."""
    if not sys.stderr.isatty():
        return None

    def show(target: str, done: int, total: int) -> None:
        width = 24
        filled = width * done // max(total, 1)
        bar = "█" * filled + "░" * (width - filled)
        end = "\n" if done == total else ""
        print(f"\r{verb} {bar} {done}/{total} {target[:30]:<30}", end=end, file=sys.stderr)

    return show


def cmd_preview(args: argparse.Namespace, estate: Estate, plan: Any) -> int:
    from sluice.engine.app.iac import job_for, preview_targets

    jobs = [job_for(estate, plan.module, t) for t in plan.targets if not t.noop]
    started = time.monotonic()
    preview = asyncio.run(
        preview_targets(estate, jobs, parallel=args.parallel, on_done=progress_printer("planning"))
    )
    if args.json:
        data = {"module": plan.module, "version": plan.version, **preview.to_dict()}
        print(json.dumps(data, indent=2))
    else:
        seconds = time.monotonic() - started
        print_preview(plan.module, plan.version, preview, len(jobs), seconds)
    return ExitCode.HALTED if preview.errors else ExitCode.OK


def print_preview(module: str, version: str, preview: Any, planned: int, seconds: float) -> None:
    from sluice.engine.executors.tofu_plan import group_lines

    unchanged = [t for t, p in preview.plans.items() if not p.changes]
    print(
        f"{module} → {version}: {planned} target(s) planned in {seconds:.1f}s — "
        f"{len(preview.groups)} distinct plan(s), "
        f"{sum(1 for g in preview.groups if g.outlier)} outlier group(s)"
    )
    for number, group in enumerate(preview.groups, 1):
        print()
        print("\n".join(group_lines(number, group.to_dict())))
    if unchanged:
        print(f"\nno changes: {', '.join(sorted(unchanged))}")
    for target, why in sorted(preview.skipped.items()):
        print(f"not previewed: {target}: {why}")
    for target, reason in sorted(preview.errors.items()):
        print(f"✗ {target}: {reason}")


def cmd_drift(args: argparse.Namespace, estate: Estate, ledger_of: Any) -> int:
    """``ledger_of(module)`` → target → the ledger's version."""
    from sluice.engine.app.iac import drift_targets, save_drift

    if args.module and args.module not in estate.modules:
        print(f"sluice: unknown module {args.module!r} in {estate.path}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    modules = [args.module] if args.module else sorted(estate.modules)
    rows = []
    for module in modules:
        rows += asyncio.run(
            drift_targets(
                estate,
                module,
                ledger_of(module),
                parallel=args.parallel,
                on_done=progress_printer(f"drift {module}"),
            )
        )
    checked = [r for r in rows if r.status != "skipped"]
    save_drift(estate, checked, time.time())
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
    else:
        print_drift(rows)
    return ExitCode.OK if all(r.status == "in_sync" for r in checked) else ExitCode.HALTED


def print_drift(rows: list[Any]) -> None:
    shown = {"in_sync": "in sync", "version_mismatch": "version mismatch"}
    width = max([len(r.target) for r in rows] + [6])
    print(f"{'TARGET':<{width}}  {'MODULE':<12} {'LEDGER':<10} {'STATE':<10} STATUS")
    for r in rows:
        status = shown.get(r.status, r.status)
        detail = f" — {r.detail}" if r.detail else ""
        print(
            f"{r.target:<{width}}  {r.module:<12} {r.ledger:<10} {r.state_version or '-':<10} "
            f"{status}{detail}"
        )
    counts: dict[str, int] = {}
    for r in rows:
        counts[shown.get(r.status, r.status)] = counts.get(shown.get(r.status, r.status), 0) + 1
    print(", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
