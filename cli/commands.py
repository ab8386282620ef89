"""Which function acts on each ``sluice`` command, and the exit code of each input error.

``sluice.cli`` parses; the commands live by theme: :mod:`.planning` (check, plan, drift),
:mod:`.drive` (run, resume, rollback), :mod:`.restore` (rollback --to), :mod:`.records` (history,
show, export, backtest, copy-history), :mod:`.console` (the console, replay, serve),
:mod:`.governance` (approve, pause, unpause, abort, freeze, unfreeze); :mod:`.common` holds what
they share.
"""

from __future__ import annotations

import argparse
import sys

from sluice.cli.common import BadInput, Locked, Unwritable
from sluice.cli.console import cmd_console, cmd_replay, cmd_serve
from sluice.cli.drive import cmd_resume, cmd_rollback, cmd_run
from sluice.cli.governance import cmd_governance
from sluice.cli.planning import cmd_check, cmd_drift, cmd_plan
from sluice.cli.records import cmd_backtest, cmd_copy_history, cmd_export, cmd_history, cmd_show
from sluice.engine.rollout.state import ExitCode


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
    from sluice.engine.app.fd_check import NotEnoughDescriptors

    try:
        return handler(args)
    except NotEnoughDescriptors as exc:  # a rollout the session refused to record (restore)
        print(f"sluice: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
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
