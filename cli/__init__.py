"""The ``sluice`` command line: parse (:mod:`.parser`), act (:mod:`.commands`).

Imports stay lazy: ``sluice --help`` and ``sluice check`` never load textual (or asyncssh,
aiohttp, rich) — the console is imported only when it opens.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Sequence

from sluice.cli import parser, process
from sluice.engine.rollout.state import ExitCode


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sluice`` console script.

    As the program (``argv`` None), it starts without the cyclic garbage collector: start-up
    makes tens of thousands of long-lived objects and no garbage worth finding, yet sets off a
    hundred collections (~30 ms). :func:`long_running` turns it back on; short commands end
    without it. At exit, everything is frozen first, which spares the interpreter's final
    collections over objects that die with the process anyway (~0.1 s once asyncssh is loaded).
    """
    program = argv is None
    if program:
        process.pause_collector()
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    finally:
        if program:
            gc.freeze()


def _main(argv: Sequence[str]) -> int:
    args_list = list(argv)
    try:
        if args_list and (
            args_list[0] in parser.COMMANDS or args_list[0] in ("-h", "--help", "--version")
        ):
            args = parser.build_parser().parse_args(args_list)
        else:
            args = parser.build_console_parser().parse_args(args_list)
            args.command = None
    except SystemExit as exc:
        return int(exc.code or 0)
    from sluice.cli import commands

    try:
        return commands.dispatch(args)
    except KeyboardInterrupt:
        process.error("interrupted")
        return ExitCode.ABORTED
    except BrokenPipeError:
        return ExitCode.OK
