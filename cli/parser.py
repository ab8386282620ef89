"""The ``sluice`` argument parsers. Firm contract: docs/design.md ("The command line")."""

from __future__ import annotations

import argparse

from sluice.engine import __version__

DEFAULT_ESTATE = "sample_estate.toml"

COMMANDS = (
    "check", "plan", "run", "resume", "rollback", "history", "show", "replay", "export",
    "copy-history",
)  # fmt: skip


def _time_scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError("must be ≥ 0 (0.01 is 100× faster, 0 as fast as possible)")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be ≥ 1")
    return value


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

    p = sub.add_parser("check", help="validate an estate file (exit 0 or 2)")
    p.add_argument("estate", metavar="ESTATE")

    p = sub.add_parser("plan", help="waves, targets, blast radius and ETA of a rollout")
    p.add_argument("estate", metavar="ESTATE")
    p.add_argument("spec", metavar="MODULE@VERSION")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")

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

    p = sub.add_parser("rollback", help="roll a wave or a target back to its previous version")
    p.add_argument("estate", metavar="ESTATE")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--wave", type=_positive_int, metavar="N")
    group.add_argument("--target", metavar="NAME")
    p.add_argument("--rollout", type=int, metavar="ID", help="default: the latest rollout")
    p.add_argument("--headless", action="store_true", required=True)
    p.add_argument("--json", action="store_true", help="print NDJSON events")
    p.add_argument("--time-scale", type=_time_scale, default=1.0, metavar="FACTOR")

    p = sub.add_parser("history", help="past rollouts, newest first")
    p.add_argument("estate", metavar="ESTATE")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("show", help="one rollout: waves, targets, gates, operator actions")
    p.add_argument("estate", metavar="ESTATE")
    p.add_argument("rollout_id", metavar="ROLLOUT_ID", type=int)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("replay", help="replay a recorded rollout in the console")
    p.add_argument("estate", metavar="ESTATE")
    p.add_argument("rollout_id", metavar="ROLLOUT_ID", type=int)
    p.add_argument("--speed", type=float, default=10.0, metavar="X")
    p.add_argument("--theme", metavar="NAME")

    p = sub.add_parser("export", help="the rollout record as TOML on stdout")
    p.add_argument("estate", metavar="ESTATE")
    p.add_argument("rollout_id", metavar="ROLLOUT_ID", type=int)

    p = sub.add_parser(
        "copy-history", help="copy every record to another history (path or URL), verified"
    )
    p.add_argument("estate", metavar="ESTATE")
    p.add_argument("dest", metavar="DEST", help="a history file or a postgresql:// URL")
    p.add_argument(
        "--replace", action="store_true", help="overwrite a destination holding this estate"
    )
    return parser


def _add_drive_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--headless", action="store_true", help="no console: print progress")
    p.add_argument("--json", action="store_true", help="with --headless: NDJSON events")
    p.add_argument("--approve", action="store_true", help="approve healthy manual gates")
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
