"""The commands that read what history recorded: ``history``, ``show``, ``export``,
``backtest``, ``copy-history``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sluice.cli.common import BadInput, find_record, load, open_history
from sluice.engine.rollout.state import ExitCode


def cmd_history(args: argparse.Namespace) -> int:
    from sluice.engine.app import report

    estate = load(args.estate)
    with open_history(estate) as history:
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
    with open_history(estate) as history:
        rec = find_record(history, args.rollout_id)
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

    with open_history(load(args.estate)) as history:
        sys.stdout.write(report.export_toml(history, find_record(history, args.rollout_id)))
    return ExitCode.OK


def cmd_backtest(args: argparse.Namespace) -> int:
    from sluice.engine.app.backtest import backtest, backtest_lines

    estate = load(args.estate)
    judge = load(args.other) if args.other else estate
    with open_history(estate) as history:
        result = backtest(history, find_record(history, args.rollout_id), judge)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print("\n".join(backtest_lines(result)))
    return ExitCode.HALTED if result.changed else ExitCode.OK


def cmd_copy_history(args: argparse.Namespace) -> int:
    from sluice.engine.model.estate import is_history_url
    from sluice.engine.store.copy import CopyMismatch, CopyRefused, copy_history
    from sluice.engine.store.history import History, HistoryError

    estate = load(args.estate)
    dest_at = args.dest if is_history_url(args.dest) else Path(args.dest).expanduser().absolute()
    with open_history(estate) as source:
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
