"""Running one OpenTofu/Terraform command through the shared spool (:mod:`.spool`).

Every command (init, plan, show, apply, …) runs detached under the spool's status-writing
wrapper, in a session of its own, its stdout and stderr appended to the spool's files — never a
pipe: a sluice killed mid-apply neither kills the apply by SIGPIPE nor loses its outcome (the
status file), and a resume adopts it (:mod:`.tofu_adopt`). The tool is ``exec``-ed by the
wrapper's shell, so a stop's SIGINT reaches it directly: OpenTofu and Terraform then finish the
resource in flight, save the state and release the lock; SIGKILL only after ``stop_grace``.
"""

from __future__ import annotations

import asyncio
import shlex
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sluice.engine.executors.spool import (
    Spool,
    follow,
    read_status,
    start_detached,
    stop_group,
    tails,
)


@dataclass(frozen=True)
class Finished:
    """How a command ended: its exit code, or None when sluice stopped it (timeout)."""

    code: int | None
    timed_out: bool = False


def command_line(argv: Sequence[str]) -> str:
    """The wrapper's command: the tool ``exec``-ed, so it gets the stop signal itself."""
    return "exec " + shlex.join(argv)


async def run_tool(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    spool: Spool,
    on_line: Callable[[str], None],
    timeout: float,
    stop_grace: float,
) -> Finished:
    """Run ``argv`` with its output appended to ``spool``; ``on_line`` gets each new line.

    Cancelled (abort), the process gets SIGINT and up to ``stop_grace`` seconds to stop before
    SIGKILL (at once if the stop is itself cancelled); the cancellation propagates once it has
    exited. Raises OSError when it cannot start.
    """
    spool.base.parent.mkdir(parents=True, exist_ok=True)
    spool.status.unlink(missing_ok=True)  # a spool reused by the target's next command
    readers, _ = tails(spool, lambda stream, line: on_line(line), from_end=True)
    process = await start_detached(command_line(argv), spool, cwd=cwd, env=env)
    waiter = asyncio.ensure_future(process.wait())
    try:
        async with asyncio.timeout(timeout):
            await follow(readers, waiter.done, waiter)
    except TimeoutError:
        await stop(process.pid, waiter.done, stop_grace)
        await follow(readers, lambda: True)
        return Finished(None, timed_out=True)
    except asyncio.CancelledError:
        await stop(process.pid, waiter.done, stop_grace)
        await follow(readers, lambda: True)
        raise
    code = read_status(spool)
    if code is None:  # the wrapper itself was killed: its exit is all there is
        code = process.returncode if process.returncode is not None else -9
    return Finished(code)


async def stop(pgid: int, ended: Callable[[], bool], grace: float) -> None:
    """SIGINT the process group; SIGKILL it after ``grace`` seconds, or at once when this stop
    is cancelled (a second abort)."""
    try:
        await stop_group(pgid, signal.SIGINT, grace, ended)
    except asyncio.CancelledError:
        await stop_group(pgid, signal.SIGKILL, 0.0, ended)
        raise
