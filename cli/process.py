"""What belongs to sluice as a process: its error lines and its garbage-collector policy."""

from __future__ import annotations

import gc
import sys


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


def pause_collector() -> bool:
    """Start-up without the cyclic collector (see :func:`sluice.cli.main`); True when paused."""
    global _collector_paused
    if gc.isenabled():
        gc.disable()
        _collector_paused = True
    return _collector_paused
