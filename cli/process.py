"""What belongs to sluice as a process: its error lines and its garbage-collector policy."""

from __future__ import annotations

import gc
import sys


def error(message: str) -> None:
    print(f"sluice: {message}", file=sys.stderr)


_collector_paused = False


#: The youngest generation's threshold for a headless run (Python's default: 700). A rollout's
#: allocations are mostly short-lived (coroutine frames, SSH packets, events once recorded): at
#: 700, a 200-target SSH rollout ran ~90 young and ~8 middle collections, 35–85 ms in all; at
#: this, 2–3 young ones, ~13 ms. At most this many objects wait for a collection (a few MB).
HEADLESS_YOUNG = 20_000


def long_running(young: int | None = None) -> None:
    """Call where a command's long-running part begins (a rollout, the console).

    Everything start-up loaded (modules, classes, functions) lives until exit: frozen, it is left
    out of the cyclic collector's scans (a full scan of it costs ~0.1 s in the middle of a
    200-target rollout), and collection, paused by :func:`main`, is back on for what the run
    allocates, its youngest generation collected every ``young`` objects if given. A no-op when
    :func:`main` did not pause it (in-process callers, tests).
    """
    global _collector_paused
    if _collector_paused:
        gc.freeze()
        if young is not None:
            gc.set_threshold(young, *gc.get_threshold()[1:])
        gc.enable()
        _collector_paused = False


def pause_collector() -> bool:
    """Start-up without the cyclic collector (see :func:`sluice.cli.main`); True when paused."""
    global _collector_paused
    if gc.isenabled():
        gc.disable()
        _collector_paused = True
    return _collector_paused
