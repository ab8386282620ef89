"""The ``sluice`` argument parsers. Firm contract: docs/design.md ("The command line")."""

from __future__ import annotations

import argparse
from typing import TypeAlias

from sluice.engine import __version__

DEFAULT_ESTATE = "sample_estate.toml"

COMMANDS = (
    "check",
    "plan",
    "run",
    "resume",
    "rollback",
    "history",
    "show",
    "replay",
    "export",
    "drift",
    "approve",
    "pause",
    "unpause",
    "abort",
    "freeze",
    "unfreeze",
    "backtest",
    "serve",
    "copy-history",
)


def _time_scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError("must be ≥ 0 (0.01 is 100× faster, 0 as fast as possible)")
    return value


def _duration(text: str) -> float:
    from sluice.engine.model.units import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be ≥ 1")
    return value


# A string: argparse's class is generic only to type checkers on Python 3.11.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sluice",
        description="Progressive rollouts of infrastructure changes, channel by channel, wave by wave.",
        epilog=(
            "Run `sluice [ESTATE]` to open the console (default ./sample_estate.toml). "
            "Exit codes: 0 ok, 1 halted, 2 bad input, 3 aborted, 4 stopped and resumable, "
            "5 another console holds the estate."
        ),
    )
    parser.add_argument("--version", action="version", version=f"sluice {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # The order here is the order `sluice --help` lists the commands in.
    _add_check_and_plan(sub)
    _add_run_and_resume(sub)
    _add_rollback(sub)
    _add_record_commands(sub)
    _add_governance_commands(sub)
    _add_backtest(sub)
    _add_serve(sub)
    _add_copy_history(sub)
    return parser


def _add_check_and_plan(sub: Subparsers) -> None:
    p = sub.add_parser("check", help="validate an estate file (exit 0 or 2)")
    p.add_argument("estate", metavar="ESTATE")

    p = sub.add_parser("plan", help="waves, targets, blast radius and ETA of a rollout")
    p.add_argument("estate", metavar="ESTATE")
    p.add_argument("spec", metavar="MODULE@VERSION")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument(
        "--preview",
        action="store_true",
        help="also run the IaC plan of every changing target; group identical plans, flag outliers",
    )
    p.add_argument("--parallel", type=_positive_int, default=4, metavar="N", help="plans at once")


def _add_run_and_resume(sub: Subparsers) -> None:
    p = sub.add_parser("run", help="start a rollout (headless, or in the console)")
    p.add_argument("estate", metavar="ESTATE")
    p.add_argument("spec", metavar="MODULE@VERSION")
    _add_drive_options(p)

    p = sub.add_parser("resume", help="continue a rollout left running or stopped")
    p.add_argument("estate", metavar="ESTATE")
    p.add_argument("rollout_id", metavar="ROLLOUT_ID", nargs="?", type=int)
    _add_drive_options(p)
    p.add_argument(
        "--no-reapply-unknown",
        action="store_true",
        help="leave applies of unknown outcome (started, never finished) for the operator",
    )


def _add_rollback(sub: Subparsers) -> None:
    p = sub.add_parser(
        "rollback",
        help="roll a wave or a target back to its previous version, or (--to) every target "
        "and module back to what it ran at a point in time",
    )
    p.add_argument("estate", metavar="ESTATE")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--wave", type=_positive_int, metavar="N")
    group.add_argument("--target", metavar="NAME")
    group.add_argument(
        "--to",
        metavar="ROLLOUT_ID|TIME",
        help="the moment that rollout finished, or an ISO 8601 time (local if no offset)",
    )
    p.add_argument("--rollout", type=int, metavar="ID", help="default: the latest rollout")
    p.add_argument("--channel", metavar="C", help="with --to: only this channel's targets")
    p.add_argument(
        "--order",
        choices=("reverse", "forward"),
        default="reverse",
        help="with --to: production first (reverse, the default) or the channels' order",
    )
    p.add_argument("--approve", action="store_true", help="with --to: approve healthy manual gates")
    p.add_argument("--headless", action="store_true", required=True)
    p.add_argument("--json", action="store_true", help="print NDJSON events")
    p.add_argument("--time-scale", type=_time_scale, default=1.0, metavar="FACTOR")


def _add_record_commands(sub: Subparsers) -> None:
    """The commands that read what history recorded: history, show, replay, drift, export."""
    p = sub.add_parser("history", help="past rollouts, newest first")
    p.add_argument("estate", metavar="ESTATE")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--prune-spools-older-than",
        type=_duration,
        metavar="DURATION",
        help="delete the spooled output of rollouts that ended longer ago (e.g. 90d); "
        "history's records are kept",
    )

    p = sub.add_parser("show", help="one rollout: waves, targets, gates, operator actions")
    p.add_argument("estate", metavar="ESTATE")
    p.add_argument("rollout_id", metavar="ROLLOUT_ID", type=int)
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--output", metavar="TARGET", help="print the full output of TARGET's last apply"
    )

    p = sub.add_parser("replay", help="replay a recorded rollout in the console")
    p.add_argument("estate", metavar="ESTATE")
    p.add_argument("rollout_id", metavar="ROLLOUT_ID", type=int)
    p.add_argument("--speed", type=float, default=10.0, metavar="X")
    p.add_argument("--theme", metavar="NAME")

    p = sub.add_parser("drift", help="does each target really run what the ledger says? (0/1/2)")
    p.add_argument("estate", metavar="ESTATE")
    p.add_argument("--module", metavar="M", help="only this module (default: every module)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--parallel", type=_positive_int, default=4, metavar="N", help="plans at once")

    p = sub.add_parser("export", help="the rollout record as TOML on stdout")
    p.add_argument("estate", metavar="ESTATE")
    p.add_argument("rollout_id", metavar="ROLLOUT_ID", type=int)


def _add_backtest(sub: Subparsers) -> None:
    p = sub.add_parser(
        "backtest",
        help="re-judge a recorded rollout's measurements with today's (or OTHER's) checks; "
        "exit 0 every verdict unchanged, 1 some verdict differs",
    )
    p.add_argument("estate", metavar="ESTATE")
    p.add_argument("rollout_id", metavar="ROLLOUT_ID", type=int)
    p.add_argument(
        "--estate", dest="other", metavar="OTHER", help="judge with this estate's checks"
    )
    p.add_argument("--json", action="store_true")


def _add_serve(sub: Subparsers) -> None:
    p = sub.add_parser("serve", help="serve the console to a browser (textual-serve)")
    p.add_argument("estate", metavar="ESTATE")
    p.add_argument("--port", type=_positive_int, default=8000, metavar="P")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback)")
    p.add_argument("--theme", metavar="NAME")
    p.add_argument("--time-scale", type=_time_scale, default=1.0, metavar="FACTOR")


def _add_copy_history(sub: Subparsers) -> None:
    p = sub.add_parser(
        "copy-history", help="copy every record to another history (path or URL), verified"
    )
    p.add_argument("estate", metavar="ESTATE")
    p.add_argument("dest", metavar="DEST", help="a history file or a postgresql:// URL")
    p.add_argument(
        "--replace", action="store_true", help="overwrite a destination holding this estate"
    )


def _add_governance_commands(sub: Subparsers) -> None:
    """Requests to the process driving the estate, and freezes (docs/governance.md)."""
    requests = {
        "approve": "approve the entry or gate the running rollout waits at",
        "pause": "pause the running rollout (in-flight applies finish)",
        "unpause": "let a paused rollout go on",
        "abort": "abort the running rollout",
    }
    for name, text in requests.items():
        p = sub.add_parser(
            name, help=text + " (from any terminal; exit 0 done, 1 refused, 4 no rollout running)"
        )
        p.add_argument("estate", metavar="ESTATE")
        p.add_argument("--wave", type=_positive_int, metavar="N", help="the wave it is meant for")
        p.add_argument("--reason", default="", metavar="R")
    p = sub.add_parser("freeze", help="stop the line: no new wave or rollout starts on the estate")
    p.add_argument("estate", metavar="ESTATE")
    p.add_argument("--reason", required=True, metavar="R")
    p.add_argument(
        "--until", metavar="TIME", help="lifted by itself then: 2026-12-24T18:00[+01:00] or 2h"
    )
    p = sub.add_parser("unfreeze", help="lift the estate's freeze")
    p.add_argument("estate", metavar="ESTATE")


def _add_drive_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--headless", action="store_true", help="no console: print progress")
    p.add_argument("--json", action="store_true", help="with --headless: NDJSON events")
    p.add_argument(
        "--approve", action="store_true", help="approve manual entries and healthy manual gates"
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="with --headless: wait at approvals (for `sluice approve`), closed windows and freezes",
    )
    p.add_argument(
        "--bypass-window",
        default="",
        metavar="REASON",
        help="start waves outside their change windows (recorded with REASON)",
    )
    p.add_argument(
        "--approve-destroy",
        action="store_true",
        help="with --approve: also approve reviewed plans that destroy or replace resources",
    )
    p.add_argument(
        "--until-wave", type=_positive_int, metavar="N", help="stop after wave N (exit 4)"
    )
    p.add_argument("--time-scale", type=_time_scale, default=1.0, metavar="FACTOR")
    p.add_argument("--theme", metavar="NAME")


def build_console_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sluice", description="Open the sluice console.")
    parser.add_argument("estate", metavar="ESTATE", nargs="?", default=DEFAULT_ESTATE)
    parser.add_argument("--theme", metavar="NAME")
    parser.add_argument("--time-scale", type=_time_scale, default=1.0, metavar="FACTOR")
    return parser
