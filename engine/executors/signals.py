"""The signal dispositions a local apply starts with (:func:`.spool.start_detached`)."""

from __future__ import annotations

import signal
import threading


def _ignored(signum: int, frame: object) -> None:
    """What an ignored SIGINT or SIGQUIT does in sluice once :func:`defaults_for_applies` ran."""


def defaults_for_applies() -> None:
    """Let applies get SIGINT and SIGQUIT at their defaults even when sluice ignores them.

    A sluice started with them ignored (``sluice run … &`` in a script, some CI runners) would
    pass that on to every apply, and a shell cannot trap a signal ignored when it started: a
    ``stop_signal = "SIGINT"`` (tofu's default) would never reach the command, which would be
    killed once the grace ran out. Caught by a no-op instead, they do nothing to sluice either,
    and a program started (exec) gets a caught signal at its default.
    """
    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may set a handler (the engine's loop runs there)
    for sig in (signal.SIGINT, signal.SIGQUIT):
        if signal.getsignal(sig) == signal.SIG_IGN:
            signal.signal(sig, _ignored)
