"""What the ``sluice`` commands share: the input errors and their exit codes, loading the
estate, opening the session or a read-only history, finding a recorded rollout."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from typing import Any

from sluice.engine.model.estate import Estate, EstateError, load_estate
from sluice.engine.model.plan import PlanError, parse_spec


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
    """The estate at ``path``; every problem in it is one line of :class:`BadInput`."""
    try:
        return load_estate(path)
    except EstateError as exc:
        raise BadInput(*map(str, exc.problems)) from None


def split_spec(spec: str) -> tuple[str, str]:
    """``MODULE@VERSION`` → ``(module, version)``."""
    try:
        return parse_spec(spec)
    except PlanError as exc:
        raise BadInput(f"sluice: {exc}") from None


def make_clock(args: argparse.Namespace) -> Any:
    """The engine clock ``--time-scale`` asks for."""
    from sluice.engine.support.clock import Clock

    return Clock(args.time_scale)


@contextlib.contextmanager
def open_session(estate: Estate, *, drive: bool = True) -> Iterator[Any]:
    """The estate's :class:`~sluice.engine.app.session.Session` (with ``drive``, its lease),
    closed at the end; refusals become exit 5, 7 or 2."""
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
def open_history(estate: Estate) -> Iterator[Any]:
    """The estate's history opened read-only (for the commands that only read it)."""
    from sluice.engine.store.history import History, HistoryError

    try:
        history = History.open(estate.history, create=False, readonly=True)
    except HistoryError as exc:
        raise BadInput(f"sluice: {exc}") from None
    try:
        yield history
    finally:
        history.close()


def find_record(history: Any, rollout_id: int) -> Any:
    """Rollout ``rollout_id``'s record, or :class:`BadInput` naming the history."""
    rec = history.rollout(rollout_id)
    if rec is None:
        raise BadInput(f"sluice: there is no rollout #{rollout_id} in {history.path}")
    return rec
