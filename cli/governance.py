"""``sluice approve|pause|unpause|abort`` (requests to the driving process) and ``freeze``/``unfreeze``."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import sys
import time
from collections.abc import Iterator
from typing import Any

from sluice.cli.common import BadInput, load
from sluice.engine.model.estate import Estate
from sluice.engine.rollout.state import ExitCode


def cmd_governance(args: argparse.Namespace) -> int:
    """approve, pause, unpause, abort, freeze, unfreeze."""
    from sluice.engine.store.history import HistoryError

    try:
        return run(args, load(args.estate))
    except (HistoryError, ValueError) as exc:
        raise BadInput(f"sluice: {exc}") from None


def run(args: argparse.Namespace, estate: Estate) -> int:
    if args.command == "freeze":
        return cmd_freeze(args, estate)
    if args.command == "unfreeze":
        return cmd_unfreeze(args, estate)
    return cmd_request(args, estate)


def session_frozen(session: Any) -> str | None:
    """Why a new rollout may not start in ``session``'s estate (``None``: not frozen)."""
    from sluice.engine.app.governance import freeze_of

    found = freeze_of(session.history, session.estate.name)
    return None if found is None else found.text()


def cmd_request(args: argparse.Namespace, estate: Estate) -> int:
    from sluice.engine.app.governance import send_request

    with _history(estate) as history:
        if history is None:
            print(f"sluice: no rollout is running on estate {estate.name!r}", file=sys.stderr)
            return ExitCode.STOPPED
        answer = send_request(
            history, estate.name, args.command, wave=args.wave, reason=args.reason
        )
    if answer.status == "done":
        print(answer.message)
        return ExitCode.OK
    print(f"sluice: {answer.message}", file=sys.stderr)
    return ExitCode.STOPPED if answer.status == "none" else ExitCode.HALTED


def cmd_freeze(args: argparse.Namespace, estate: Estate) -> int:
    from sluice.engine.app.governance import actor
    from sluice.engine.store import requests as store

    until = parse_until(args.until) if args.until else None
    if not args.reason.strip():
        raise ValueError("--reason: a freeze needs a reason")
    with _history(estate, create=True) as history:
        store.freeze(history, estate=estate.name, actor=actor(), reason=args.reason, until=until)
    when = (
        f" until {dt.datetime.fromtimestamp(until).astimezone():%Y-%m-%d %H:%M %Z}" if until else ""
    )
    print(f"estate {estate.name!r} frozen{when}: no new wave or rollout starts ({args.reason})")
    return ExitCode.OK


def cmd_unfreeze(args: argparse.Namespace, estate: Estate) -> int:
    from sluice.engine.app.governance import actor
    from sluice.engine.store import requests as store

    with _history(estate) as history:
        lifted = (
            None if history is None else store.unfreeze(history, estate=estate.name, actor=actor())
        )
    if lifted is None:
        print(f"estate {estate.name!r} was not frozen")
    else:
        print(f"estate {estate.name!r} unfrozen (frozen by {lifted.actor}: {lifted.reason})")
    return ExitCode.OK


def parse_until(text: str, now: float | None = None) -> float:
    """``--until``: an ISO datetime (local time without an offset) or a duration from now."""
    from sluice.engine.model.units import parse_duration

    now = time.time() if now is None else now
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        try:
            return now + parse_duration(text)
        except ValueError:
            raise ValueError(
                f"--until {text!r}: expected a time like 2026-12-24T18:00 (or +01:00) or a duration like 2h"
            ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # the machine's local time
    if moment.timestamp() <= now:
        raise ValueError(f"--until {text!r} is in the past")
    return moment.timestamp()


@contextlib.contextmanager
def _history(estate: Estate, *, create: bool = False) -> Iterator[Any]:
    from sluice.engine.store.history import History

    if not create and not estate.history_path.exists():
        yield None
        return
    history = History.open(estate.history_path, create=create)
    try:
        yield history
    finally:
        history.close()
