"""Running one OpenTofu/Terraform command whose output survives sluice.

The tool writes to a file, never to a pipe: a sluice killed mid-apply must not kill the apply at
its next write (SIGPIPE). sluice tails the file while the process runs and reads the rest when it
exits. The process has its own session (a Ctrl-C in sluice's terminal does not reach it); stopping
it is SIGINT — OpenTofu and Terraform then finish the resource in flight, save the state and
release the lock — and SIGKILL only after ``stop_grace``.

Kept small and on its own so that the shared spool mechanism for applies that outlive their
driver can replace it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

#: How often a running command's output file is read for new lines.
TAIL_SECONDS = 0.05


@dataclass(frozen=True)
class Finished:
    """How a command ended: its exit code, or None when sluice stopped it (timeout)."""

    code: int | None
    timed_out: bool = False


class _Tail:
    """Reads complete lines appended to a file since the last read."""

    def __init__(self, path: Path, on_line: Callable[[str], None]):
        self.path = path
        self.on_line = on_line
        self.offset = 0
        self.partial = b""

    def read(self, final: bool = False) -> None:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except OSError:
            return
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        if final and self.partial:
            lines.append(self.partial)
            self.partial = b""
        for raw in lines:
            self.on_line(raw.decode("utf-8", "replace").rstrip("\r"))


async def run_tool(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log: Path,
    on_line: Callable[[str], None],
    timeout: float,
    stop_grace: float,
) -> Finished:
    """Run ``argv`` with stdout and stderr appended to ``log``; ``on_line`` gets each line.

    Cancelled (abort), the process gets SIGINT and up to ``stop_grace`` seconds to stop before
    SIGKILL; the cancellation propagates once it has exited. Raises OSError when it cannot start.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    tail = _Tail(log, on_line)
    with log.open("ab") as out:
        tail.offset = out.tell()
        spawn = asyncio.ensure_future(
            asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                cwd=cwd,
                env=dict(env),
                start_new_session=True,
            )
        )
        try:
            process = await asyncio.shield(spawn)
        except asyncio.CancelledError:
            with contextlib.suppress(OSError):
                await stop(await spawn, stop_grace)
            raise
    waiter = asyncio.ensure_future(process.wait())
    try:
        async with asyncio.timeout(timeout):
            while not waiter.done():
                await asyncio.wait([waiter], timeout=TAIL_SECONDS)
                tail.read()
    except TimeoutError:
        await stop(process, stop_grace)
        tail.read(final=True)
        return Finished(None, timed_out=True)
    except asyncio.CancelledError:
        await stop(process, stop_grace)
        tail.read(final=True)
        raise
    tail.read(final=True)
    return Finished(waiter.result())


async def stop(process: asyncio.subprocess.Process, grace: float) -> None:
    """SIGINT the process group; SIGKILL it if it has not exited after ``grace`` seconds."""
    if process.returncode is None:
        _signal_group(process.pid, signal.SIGINT)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await process.wait()
    _signal_group(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        await process.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
