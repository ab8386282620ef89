"""The commands that open the console: ``sluice [ESTATE]``, ``replay`` and ``serve``.

Only here does the command line import :mod:`sluice.tui`, lazily, when the console opens.
"""

from __future__ import annotations

import argparse
from typing import Any

from sluice.cli.common import BadInput, find_record, load, open_history
from sluice.cli.process import long_running
from sluice.engine.model.estate import Estate


def cmd_console(args: argparse.Namespace) -> int:
    return open_console(args, load(args.estate))


def cmd_replay(args: argparse.Namespace) -> int:
    estate = load(args.estate)
    with open_history(estate) as history:
        find_record(history, args.rollout_id)
    return open_console(args, estate, replay=args.rollout_id, speed=args.speed)


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


def open_console(args: argparse.Namespace, estate: Estate, **how: Any) -> int:
    """Import the console now and run it on ``estate`` until it quits (its exit code)."""
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
