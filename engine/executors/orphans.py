"""Applies a killed sluice left running: found by a marker in their environment, waited out.

Local applies run in their own process group, so a ``kill -9`` of sluice (or a lost terminal)
does not stop them: a ``tofu apply`` goes on to its end. History records such an apply as
started but never finished, and ``sluice resume`` re-applies it — which must not start while the
orphan still runs, or two applies of one target would overlap. Every local apply therefore
carries ``SLUICE_APPLY=<estate>/<target>`` in its environment (inherited by its children), and
before a rollout's first local apply the executor looks for processes that carry one: an apply of
such a target waits for them to exit first.

Linux only (``/proc``); elsewhere nothing is found and applies start as before.
"""

from __future__ import annotations

import asyncio
import os
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path

from sluice.engine.executors.base import ApplyResult, OutputSink
from sluice.engine.model.units import format_duration

#: The environment variable every local apply carries: ``<estate>/<target>``.
MARKER = "SLUICE_APPLY"


def marker_value(estate: str, target: str) -> str:
    return f"{estate}/{target}"


async def wait_out(
    look: Callable[[], Awaitable[list[int]]],
    what: str,
    output: OutputSink,
    timeout: float,
    poll: float,
) -> ApplyResult | None:
    """Wait until ``look()`` finds no orphaned apply of ``what`` (a target, maybe "on host").

    Says once, in the target's output, that it waits; None when none is (or is any longer)
    running, a failed result if one still runs after ``timeout`` seconds — never an overlap.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    said = False
    while pids := await look():
        which = ", ".join(map(str, pids))
        if not said:
            output(
                "stderr",
                f"sluice: an earlier apply of {what} (pid {which}), left running by a sluice that "
                "stopped, is still running: waiting for it to finish before applying again",
            )
            said = True
        if loop.time() > deadline:
            return ApplyResult(
                False,
                f"an earlier apply of {what} (pid {which}) is still running after "
                f"{format_duration(timeout)}; not starting another",
            )
        await asyncio.sleep(poll)
    return None


def find_running(estate: str, proc: Path = Path("/proc")) -> dict[str, list[int]]:
    """Target → pids of live processes (not this one's children) marked as applies of ``estate``.

    Reads each readable ``/proc/PID/environ`` once (the environment a process was started with);
    processes of other users are unreadable to a non-root sluice and are skipped.
    """
    prefix = f"{MARKER}={estate}/".encode()
    me = os.getpid()
    found: dict[str, list[int]] = defaultdict(list)
    try:
        entries = list(os.scandir(proc))
    except OSError:
        return {}
    for entry in entries:
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = (proc / entry.name / "environ").read_bytes()
        except OSError:
            continue
        if prefix not in environ:
            continue
        for variable in environ.split(b"\0"):
            if variable.startswith(prefix) and alive(int(entry.name), proc):
                target = variable[len(prefix) :].decode("utf-8", "replace")
                found[target].append(int(entry.name))
    return dict(found)


def still_running(
    pids: list[int], estate: str, target: str, proc: Path = Path("/proc")
) -> list[int]:
    """Those of ``pids`` still alive *and* still marked for ``target`` (a pid may be reused)."""
    marker = f"{MARKER}={marker_value(estate, target)}".encode()
    running = []
    for pid in pids:
        try:
            environ = (proc / str(pid) / "environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0") and alive(pid, proc):
            running.append(pid)
    return running


def alive(pid: int, proc: Path = Path("/proc")) -> bool:
    """Whether ``pid`` runs (a zombie has finished: only its exit status is left)."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]
