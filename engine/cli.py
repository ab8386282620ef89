"""The ``sluice`` command line. Firm contract: see docs/DESIGN.md ("The command line").

Imports stay lazy: ``sluice --help`` and ``sluice check`` never load textual (or asyncssh,
aiohttp, rich) — the console is imported only when it opens.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence

from engine import __version__

EXIT_OK, EXIT_HALTED, EXIT_BAD_INPUT, EXIT_ABORTED, EXIT_STOPPED, EXIT_LOCKED = 0, 1, 2, 3, 4, 5
DEFAULT_ESTATE = "sample_estate.toml"

COMMANDS = ("check", "plan", "run", "resume", "rollback", "history", "show", "replay", "export")


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


def error(message: str) -> None:
    print(f"sluice: {message}", file=sys.stderr)


_collector_paused = False


def long_running() -> None:
    """Call where a command's long-running part begins (a rollout, the console).

    Everything start-up loaded (modules, classes, functions) lives until exit: frozen, it is left
    out of the cyclic collector's scans (a full scan of it costs ~0.1 s in the middle of a
    200-target rollout), and collection, paused by :func:`main`, is back on for what the run
    allocates. A no-op when :func:`main` did not pause it (in-process callers, tests).
    """
    global _collector_paused
    if _collector_paused:
        gc.freeze()
        gc.enable()
        _collector_paused = False


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sluice`` console script.

    As the program (``argv`` None), it starts without the cyclic garbage collector: start-up
    makes tens of thousands of long-lived objects and no garbage worth finding, yet sets off a
    hundred collections (~30 ms). :func:`long_running` turns it back on; short commands end
    without it. At exit, everything is frozen first, which spares the interpreter's final
    collections over objects that die with the process anyway (~0.1 s once asyncssh is loaded).
    """
    global _collector_paused
    program = argv is None
    if program and gc.isenabled():
        gc.disable()
        _collector_paused = True
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    finally:
        if program:
            gc.freeze()


def _main(argv: Sequence[str]) -> int:
    args_list = list(argv)
    try:
        if args_list and (
            args_list[0] in COMMANDS or args_list[0] in ("-h", "--help", "--version")
        ):
            args = build_parser().parse_args(args_list)
        else:
            args = build_console_parser().parse_args(args_list)
            args.command = None
    except SystemExit as exc:
        return int(exc.code or 0)
    from engine import commands

    try:
        return commands.dispatch(args)
    except KeyboardInterrupt:
        error("interrupted")
        return EXIT_ABORTED
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    # ``python -m engine.cli``: run the package's own module, whose state commands share.
    from engine.cli import main as program

    sys.exit(program())
