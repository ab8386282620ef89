"""``sluice run``, ``resume`` and ``rollback`` (of a wave or a target): the commands that drive a
rollout, headless here or in the console."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sluice.cli.common import (
    BadInput,
    load,
    make_clock,
    open_session,
    split_spec,
)
from sluice.cli.console import open_console
from sluice.cli.process import HEADLESS_YOUNG, long_running
from sluice.engine.model.estate import Estate
from sluice.engine.model.plan import Plan, PlanError
from sluice.engine.rollout.state import ExitCode


def cmd_run(args: argparse.Namespace) -> int:
    estate = load(args.estate)
    module, version = split_spec(args.spec)
    if not args.headless:
        return open_console(args, estate, start=(module, version))
    with open_session(estate) as session:
        try:
            plan = session.plan(module, version)
        except PlanError as exc:
            raise BadInput(f"sluice: {exc}") from None
        _check_until(args, plan)
        fit_descriptors(estate, plan)
        from sluice.cli.governance import session_frozen

        frozen = session_frozen(session)
        if frozen and not args.wait:
            print(
                f"sluice: not started: {frozen}; `--wait` waits for `sluice unfreeze`",
                file=sys.stderr,
            )
            return ExitCode.STOPPED
        rollout = session.new_rollout(
            plan,
            clock=make_clock(args),
            interactive=False,
            approve=args.approve,
            approve_destroy=args.approve_destroy,
            until_wave=args.until_wave,
            **_governance_options(args),
        )
        return drive(session, rollout, args)


def cmd_resume(args: argparse.Namespace) -> int:
    from sluice.engine.app.session import ResumeError

    estate = load(args.estate)
    if not args.headless:
        return open_console(args, estate, resume=args.rollout_id or 0)
    fit_descriptors(estate)
    with open_session(estate) as session:
        try:
            record = session.resumable(args.rollout_id)
            rollout = session.resume_rollout(
                record,
                clock=make_clock(args),
                interactive=False,
                approve=args.approve,
                approve_destroy=args.approve_destroy,
                until_wave=args.until_wave,
                reapply_unknown=not args.no_reapply_unknown,
                **_governance_options(args),
            )
        except ResumeError as exc:
            raise BadInput(f"sluice: {exc}") from None
        _check_until(args, rollout.plan)
        return drive(session, rollout, args)


def cmd_rollback(args: argparse.Namespace) -> int:
    from sluice.engine.app.session import ResumeError

    if args.to is not None:
        from sluice.cli.restore import cmd_restore

        return cmd_restore(args)
    estate = load(args.estate)
    fit_descriptors(estate)
    with open_session(estate) as session:
        rollouts = [r for r in session.history.rollouts() if r.kind == "rollout"]
        source = (
            next((r for r in rollouts if r.id == args.rollout), None)
            if args.rollout
            else (rollouts[0] if rollouts else None)
        )
        if source is None:
            raise BadInput(
                f"sluice: no rollout {'#' + str(args.rollout) + ' ' if args.rollout else ''}in the history"
            )
        try:
            recorded = Plan.from_dict(estate, source.plan)
            if args.wave is not None:
                targets = [t.name for t in recorded.wave(args.wave).targets]
        except PlanError as exc:
            raise BadInput(f"sluice: rollout #{source.id}: {exc}") from None
        if args.wave is None:
            names = [t.name for t in recorded.targets]
            if args.target not in names:
                raise BadInput(f"sluice: --target {args.target}: not part of rollout #{source.id}")
            targets = [args.target]
        try:
            rollout = session.rollback_rollout(source, targets, clock=make_clock(args))
        except ResumeError as exc:
            raise BadInput(f"sluice: {exc}") from None
        if not any(t.status == "ok" for t in rollout.targets.values()):
            print(
                f"nothing to roll back: {', '.join(targets)} already at the versions they had before #{source.id}"
            )
        return drive(session, rollout, args)


def fit_descriptors(estate: Estate, plan: Plan | None = None) -> None:
    """Fail closed before anything runs or is recorded when applies cannot get descriptors."""
    from sluice.engine.app.fd_check import shortfall

    problem = shortfall(estate, plan)
    if problem is not None:
        raise BadInput(f"sluice: {problem}")


def _governance_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"wait": args.wait, "window_bypass": args.bypass_window}


def _check_until(args: argparse.Namespace, plan: Plan) -> None:
    if getattr(args, "until_wave", None) is not None and args.until_wave > len(plan.waves):
        raise BadInput(
            f"sluice: --until-wave {args.until_wave}: the plan has {len(plan.waves)} waves"
        )


def drive(session: Any, rollout: Any, args: argparse.Namespace) -> int:
    """Run ``rollout`` headless (text or NDJSON on stdout) and return its exit code."""
    import asyncio

    from sluice.engine.app.headless import run_headless
    from sluice.engine.app.printers import JsonPrinter, TextPrinter

    printer = JsonPrinter() if args.json else TextPrinter()
    _import_executors(session.estate, rollout.plan, getattr(args, "until_wave", None))
    long_running(young=HEADLESS_YOUNG)

    async def go() -> int:
        outcome = await run_headless(
            rollout, printer, runner=session.drive, interrupt=session.interrupt
        )
        return outcome.exit_code

    code = asyncio.run(go())
    if session.history_failure:
        print(f"sluice: {session.history_failure}", file=sys.stderr)
        _exit_untouched(ExitCode.HISTORY_UNWRITABLE)
    return code


def _exit_untouched(code: int) -> None:
    """Exit without touching the history again: what it holds was committed before the failure,
    and closing it (a checkpoint, the lease released) would write it — through a memory map, for
    its -shm, which a write error turns into SIGBUS. The stale lease is taken over by the next
    run (its holder is gone)."""
    import os

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _import_executors(estate: Estate, plan: Plan, until_wave: int | None) -> None:
    """Import the executors the plan's applies will use now, with the rest of start-up.

    Loaded before :func:`long_running`, asyncssh's objects are frozen with everything else rather
    than scanned by the collections of the run (a 200-target rollout ran ~70 fewer of them). A
    plan of no-ops loads none, as before.
    """
    from sluice.engine.executors.base import executor_class

    kinds = {
        estate.executors[t.executor].kind
        for wave in plan.waves[:until_wave]
        for t in wave.targets
        if not t.noop and t.executor in estate.executors
    }
    for kind in sorted(kinds):
        executor_class(kind)
