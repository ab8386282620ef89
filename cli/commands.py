"""What each ``sluice`` command does; ``sluice.cli`` parses, this module acts."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sluice.cli.process import long_running
from sluice.engine.model.estate import Estate, EstateError, load_estate
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


class BadInput(Exception):
    """A problem with the user's input; its lines are printed and sluice exits 2."""

    def __init__(self, *lines: str):
        super().__init__("\n".join(lines))
        self.lines = lines


class Locked(Exception):
    """Another process drives the estate (exit 5)."""


class Unwritable(Exception):
    """The history cannot be written (exit 7); reading commands still work."""


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
        "resume": cmd_resume,
        "rollback": cmd_rollback,
        "history": cmd_history,
        "show": cmd_show,
        "export": cmd_export,
        "replay": cmd_replay,
        "drift": cmd_drift,
        "approve": cmd_governance,
        "pause": cmd_governance,
        "unpause": cmd_governance,
        "abort": cmd_governance,
        "freeze": cmd_governance,
        "unfreeze": cmd_governance,
        "backtest": cmd_backtest,
        "serve": cmd_serve,
        "copy-history": cmd_copy_history,
    }
    handler = handlers[args.command]  # the parser accepts only these commands
    try:
        return handler(args)
    except Locked as exc:
        print(exc, file=sys.stderr)
        return ExitCode.LOCKED
    except Unwritable as exc:
        print(exc, file=sys.stderr)
        return ExitCode.HISTORY_UNWRITABLE
    except BadInput as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return ExitCode.BAD_INPUT


def warn_descriptors(estate: Estate) -> None:
    """A warning per channel whose applies cannot fit the fd limit (``run`` would refuse)."""
    from sluice.engine.support import descriptors

    for problem in descriptors.shortfalls(estate, estate.channels, descriptors.hard_limit()):
        print(f"sluice: warning: {problem}", file=sys.stderr)


def fit_descriptors(estate: Estate, plan: Plan | None = None) -> None:
    """Fail closed before anything runs or is recorded when applies cannot get descriptors."""
    from sluice.engine.support import descriptors

    channels = {w.channel.name: w.channel for w in plan.waves} if plan else None
    limit = descriptors.raise_soft_limit()
    problems = descriptors.shortfalls(
        estate, channels.values() if channels is not None else estate.channels, limit
    )
    if problems:
        raise BadInput(f"sluice: {problems[0]}")


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
        return history.ledger(_spec(spec)[0])
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


def cmd_console(args: argparse.Namespace) -> int:
    return _console(args, load(args.estate))


def cmd_run(args: argparse.Namespace) -> int:
    estate = load(args.estate)
    module, version = _spec(args.spec)
    if not args.headless:
        return _console(args, estate, start=(module, version))
    with _session(estate) as session:
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
            clock=_clock(args),
            interactive=False,
            approve=args.approve,
            approve_destroy=args.approve_destroy,
            until_wave=args.until_wave,
            **_governance_options(args),
        )
        return _drive(session, rollout, args)


def cmd_resume(args: argparse.Namespace) -> int:
    from sluice.engine.app.session import ResumeError

    estate = load(args.estate)
    if not args.headless:
        return _console(args, estate, resume=args.rollout_id or 0)
    fit_descriptors(estate)
    with _session(estate) as session:
        try:
            record = session.resumable(args.rollout_id)
            rollout = session.resume_rollout(
                record,
                clock=_clock(args),
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
        return _drive(session, rollout, args)


def cmd_rollback(args: argparse.Namespace) -> int:
    from sluice.engine.app.session import ResumeError

    if args.to is not None:
        from sluice.cli.restore import cmd_restore

        return cmd_restore(args)
    estate = load(args.estate)
    fit_descriptors(estate)
    with _session(estate) as session:
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
            rollout = session.rollback_rollout(source, targets, clock=_clock(args))
        except ResumeError as exc:
            raise BadInput(f"sluice: {exc}") from None
        if not any(t.status == "ok" for t in rollout.targets.values()):
            print(
                f"nothing to roll back: {', '.join(targets)} already at the versions they had before #{source.id}"
            )
        return _drive(session, rollout, args)


def cmd_history(args: argparse.Namespace) -> int:
    from sluice.engine.app import report

    estate = load(args.estate)
    with _history(estate) as history:
        if args.prune_spools_older_than is not None:
            from sluice.engine.app.spools import prune

            count = prune(history, estate, args.prune_spools_older_than)
            print(f"pruned the spooled output of {count} rollout(s)")
            return ExitCode.OK
        if args.json:
            print(report.history_json(history))
        else:
            report.print_wide(report.history_table(history))
    return ExitCode.OK


def cmd_show(args: argparse.Namespace) -> int:
    from sluice.engine.app import report

    estate = load(args.estate)
    with _history(estate) as history:
        rec = _record(history, args.rollout_id)
        if args.output is not None:
            from sluice.engine.app.spools import NoOutput, print_output

            try:
                print_output(estate, rec.id, args.output)
            except NoOutput as exc:
                raise BadInput(f"sluice: {exc}") from None
            return ExitCode.OK
        if args.json:
            print(json.dumps(report.record(history, rec), indent=2, default=str))
        else:
            print("\n".join(report.show_text(history, rec)))
    return ExitCode.OK


def cmd_export(args: argparse.Namespace) -> int:
    from sluice.engine.app import report

    with _history(load(args.estate)) as history:
        sys.stdout.write(report.export_toml(history, _record(history, args.rollout_id)))
    return ExitCode.OK


def cmd_serve(args: argparse.Namespace) -> int:
    import importlib.util

    estate = load(args.estate)
    if importlib.util.find_spec("textual_serve") is None:
        raise BadInput("sluice: `sluice serve` needs textual-serve: pip install 'sluice[serve]'")
    try:
        from sluice.tui.serve import serve
    except ImportError as exc:
        raise BadInput(f"sluice: the console cannot be served: {exc}") from None
    return serve(
        str(estate.path),
        estate_name=estate.name,
        host=args.host,
        port=args.port,
        theme=args.theme,
        time_scale=args.time_scale,
    )


def cmd_replay(args: argparse.Namespace) -> int:
    estate = load(args.estate)
    with _history(estate) as history:
        _record(history, args.rollout_id)
    return _console(args, estate, replay=args.rollout_id, speed=args.speed)


def cmd_governance(args: argparse.Namespace) -> int:
    """approve, pause, unpause, abort, freeze, unfreeze (cli/governance.py)."""
    from sluice.cli import governance
    from sluice.engine.store.history import HistoryError

    try:
        return governance.run(args, load(args.estate))
    except (HistoryError, ValueError) as exc:
        raise BadInput(f"sluice: {exc}") from None


def cmd_backtest(args: argparse.Namespace) -> int:
    from sluice.engine.app.backtest import backtest, backtest_lines

    estate = load(args.estate)
    judge = load(args.other) if args.other else estate
    with _history(estate) as history:
        result = backtest(history, _record(history, args.rollout_id), judge)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print("\n".join(backtest_lines(result)))
    return ExitCode.HALTED if result.changed else ExitCode.OK


# ---------------------------------------------------------------------- helpers


def _governance_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"wait": args.wait, "window_bypass": args.bypass_window}


def cmd_copy_history(args: argparse.Namespace) -> int:
    from sluice.engine.model.estate import is_history_url
    from sluice.engine.store.copy import CopyMismatch, CopyRefused, copy_history
    from sluice.engine.store.history import History, HistoryError

    estate = load(args.estate)
    dest_at = args.dest if is_history_url(args.dest) else Path(args.dest).expanduser().absolute()
    with _history(estate) as source:
        if str(source.path) == str(dest_at):
            raise BadInput(f"sluice: {args.dest} is this estate's history itself")
        try:
            dest = History.open(dest_at)
        except HistoryError as exc:
            raise BadInput(f"sluice: {exc}") from None
        try:
            tables = copy_history(source, dest, estate.name, replace=args.replace)
        except (CopyRefused, CopyMismatch) as exc:
            raise BadInput(f"sluice: {exc}") from None
        finally:
            dest.close()
    rows = sum(t.rows for t in tables)
    print(f"copied {rows} rows of estate {estate.name!r} from {source.path} to {dest.path}")
    for t in tables:
        print(f"  {t.table:<17} {t.rows:>9} rows  sha256 {t.sha256[:16]}  verified")
    return ExitCode.OK


def _spec(spec: str) -> tuple[str, str]:
    try:
        return parse_spec(spec)
    except PlanError as exc:
        raise BadInput(f"sluice: {exc}") from None


def _clock(args: argparse.Namespace) -> Any:
    from sluice.engine.support.clock import Clock

    return Clock(args.time_scale)


def _check_until(args: argparse.Namespace, plan: Plan) -> None:
    if getattr(args, "until_wave", None) is not None and args.until_wave > len(plan.waves):
        raise BadInput(
            f"sluice: --until-wave {args.until_wave}: the plan has {len(plan.waves)} waves"
        )


@contextlib.contextmanager
def _session(estate: Estate, *, drive: bool = True) -> Iterator[Any]:
    from sluice.engine.app.session import LeaseHeld, Session
    from sluice.engine.store.history import HistoryError, HistoryNotWritable
    from sluice.engine.store.write_failure import WRITE_ERRORS, describe

    try:
        session = Session.open(estate, drive=drive)
    except LeaseHeld as exc:
        raise Locked(exc.refusal) from None
    except HistoryNotWritable as exc:
        raise Unwritable(f"sluice: {exc}") from None
    except HistoryError as exc:
        raise BadInput(f"sluice: {exc}") from None
    try:
        yield session
    except WRITE_ERRORS as exc:  # before the rollout runs (its own writes are guarded)
        raise Unwritable(
            f"sluice: cannot write the history {session.history.path}: "
            f"{describe(exc, session.history.path)}"
        ) from None
    finally:
        session.close()


@contextlib.contextmanager
def _history(estate: Estate) -> Iterator[Any]:
    from sluice.engine.store.history import History, HistoryError

    try:
        history = History.open(estate.history, create=False, readonly=True)
    except HistoryError as exc:
        raise BadInput(f"sluice: {exc}") from None
    try:
        yield history
    finally:
        history.close()


def _record(history: Any, rollout_id: int) -> Any:
    rec = history.rollout(rollout_id)
    if rec is None:
        raise BadInput(f"sluice: there is no rollout #{rollout_id} in {history.path}")
    return rec


def _drive(session: Any, rollout: Any, args: argparse.Namespace) -> int:
    import asyncio

    from sluice.engine.app.headless import run_headless
    from sluice.engine.app.printers import JsonPrinter, TextPrinter

    printer = JsonPrinter() if args.json else TextPrinter()
    _import_executors(session.estate, rollout.plan, getattr(args, "until_wave", None))
    long_running()

    async def go() -> int:
        outcome = await run_headless(rollout, printer, runner=session.drive)
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


def _console(args: argparse.Namespace, estate: Estate, **how: Any) -> int:
    try:
        from sluice.tui.app import run_console
    except ImportError as exc:
        raise BadInput(f"sluice: the console cannot start: {exc}") from None
    long_running()
    return int(
        run_console(
            estate,
            theme=getattr(args, "theme", None),
            time_scale=getattr(args, "time_scale", 1.0),
            **how,
        )
    )
