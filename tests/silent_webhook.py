"""A webhook receiver that accepts and never answers, and real `sluice run` processes against it
(tests/test_notify_hang.py, tests/test_notify_signal.py)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

#: What exiting may take once delivery has stopped: the last rows flushed, the history closed,
#: the interpreter torn down. Measured at load 12 on 2 cores: 0.3-0.6 s. Not a speed target — it
#: is far below what any wait not counted against the deadline adds (seconds), so a run over the
#: bound is waiting on something it must not wait on.
EXITING = 2.0


async def silent_server() -> tuple[asyncio.AbstractServer, int, list[asyncio.StreamWriter]]:
    """Accepts every connection, reads nothing, answers nothing, closes nothing."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], held


async def start_run(estate: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sluice.cli", "run", str(estate), "m@2", "--headless",
        "--time-scale", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )  # fmt: skip


async def read_until_done(process: asyncio.subprocess.Process, out: list[str]) -> float | None:
    """Collect the output into ``out``; the monotonic time ``■ done`` was read (None: never)."""
    assert process.stdout is not None
    done = None
    async for line in process.stdout:
        out.append(line.decode())
        if done is None and out[-1].startswith("■ done"):
            done = time.monotonic()
    return done
