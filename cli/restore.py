"""``sluice rollback ESTATE --to ROLLOUT_ID|TIME``: the command line of a point-in-time restore.

The engine side is :mod:`sluice.engine.app.restore`; this previews the plan, resumes a part a
crash cut off, then drives each part as a recorded rollout (stopping at the first that does not
end ``done``, with its exit code).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from sluice.cli.common import BadInput, load, make_clock, open_session
from sluice.cli.drive import drive
from sluice.engine.rollout.state import ExitCode


def cmd_restore(args: argparse.Namespace) -> int:
    from sluice.engine.app.restore import (
        RestoreError,
        changes_since,
        point_in_time,
        restore_marker,
        restore_parts,
        restore_plan,
        unfinished_restore,
    )
    from sluice.engine.app.session import ResumeError

    estate = load(args.estate)
    if args.channel is not None and args.channel not in {c.name for c in estate.channels}:
        raise BadInput(f"sluice: --channel {args.channel}: no such channel in {estate.path}")
    with open_session(estate) as session:
        try:
            point = point_in_time(session.history, args.to)
        except RestoreError as exc:
            raise BadInput(f"sluice: {exc}") from None
        cut_off = unfinished_restore(session.history, point)
        if cut_off is not None:
            _say(args, f"resuming rollout #{cut_off.id}, a part of this restore left unfinished")
            try:
                rollout = session.resume_rollout(
                    cut_off, clock=make_clock(args), interactive=False, approve=args.approve
                )
            except ResumeError as exc:
                raise BadInput(f"sluice: {exc}") from None
            code = drive(session, rollout, args)
            if code != ExitCode.OK:
                return code
        changes, notes = changes_since(session.history, estate, point, args.channel)
        parts = restore_parts(changes)
        for note in notes:
            _say(args, f"note: {note}")
        if not parts:
            _say(args, f"nothing to restore: every target runs what it ran at {point.label}")
            return ExitCode.OK
        try:
            plans = [restore_plan(estate, part, point, args.order) for part in parts]
        except RestoreError as exc:
            raise BadInput(f"sluice: {exc}") from None
        if not args.json:
            _preview(estate.name, point.label, parts, plans)
        for part, plan in zip(parts, plans, strict=True):
            rollout = session.new_rollout(
                plan,
                clock=make_clock(args),
                interactive=False,
                approve=args.approve,
                extra={"restore": restore_marker(point, part, len(parts), args.order)},
            )
            code = drive(session, rollout, args)
            if code != ExitCode.OK:
                return code
        return ExitCode.OK


def _say(args: argparse.Namespace, text: str) -> None:
    import sys

    print(text, file=sys.stderr if args.json else sys.stdout)


def _preview(estate: str, label: str, parts: list[Any], plans: list[Any]) -> None:
    from rich.console import Console

    from sluice.engine.app.report import make_table
    from sluice.engine.app.restore import PREVIEW_COLUMNS, preview_rows

    rows = preview_rows(parts, plans, time.time())
    targets = len({r[3] for r in rows})
    title = (
        f"restore {estate} to {label}: {len(rows)} change(s) on {targets} target(s) "
        f"in {len(parts)} part(s), newest change first"
    )
    Console(width=max(Console().width, 110)).print(
        make_table(title, PREVIEW_COLUMNS, rows, {"part", "wave"})
    )
