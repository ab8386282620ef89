"""A webhook that accepts the connection and never answers must not hang `sluice run` (issue 12,
item 2): a real TCP server on 127.0.0.1, real `python -m sluice.cli run` processes, 50 runs.

Before the fix about one run in ten printed ``■ done`` and its "not delivered" lines, then never
exited (the worker's cancellation became aiohttp's timeout, was swallowed, and the worker went
back to ``queue.get()`` for ever)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

ESTATE = """
[estate]
name = "hang-test"

[[channels]]
name = "dev"

[targets.a]
channel = "dev"
executor = "sim"

[executors.sim]
kind = "simulated"
duration = "0s..0s"

[modules.m]
versions = ["1", "2"]
initial = "1"

[[notify]]
url = "http://127.0.0.1:{port}/hook"
format = "json"
events = ["wave_done", "rollout_finished"]
timeout = "1s"
retries = 1
"""

RUNS = 50
AT_ONCE = 4
#: Far above what sluice may take after done — the delivery limit (2.5 s: two 1 s attempts and a
#: 0.5 s backoff) and its bounded waits for the workers (5 s each) — plus start-up on a machine
#: shared by many (load 12 on 2 cores seen): a run still alive then is hung, not slow. A hung
#: run is sent SIGABRT first, so faulthandler shows where it is stuck.
HUNG_AFTER = 60.0


async def _silent_server() -> tuple[asyncio.AbstractServer, int, list[asyncio.StreamWriter]]:
    """Accepts every connection, reads nothing, answers nothing, closes nothing."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], held


async def _one_run(estate: Path) -> tuple[int | None, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sluice.cli", "run", str(estate), "m@2", "--headless",
        "--time-scale", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )  # fmt: skip
    assert process.stdout is not None
    reading = asyncio.ensure_future(process.stdout.read())  # kept whole even if we kill it
    try:
        await asyncio.wait_for(process.wait(), HUNG_AFTER)
    except TimeoutError:
        process.send_signal(signal.SIGABRT)  # faulthandler prints where it is stuck
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
        return None, (await reading).decode()
    return process.returncode, (await reading).decode()


@pytest.mark.timeout(900)
async def test_a_webhook_that_never_answers_never_hangs_sluice(tmp_path: Path) -> None:
    server, port, held = await _silent_server()
    slots = asyncio.Semaphore(AT_ONCE)

    async def run(index: int) -> tuple[int | None, str]:
        folder = tmp_path / f"run{index}"
        folder.mkdir()
        estate = folder / "estate.toml"
        estate.write_text(ESTATE.replace("{port}", str(port)))
        async with slots:
            return await _one_run(estate)

    try:
        results = await asyncio.gather(*(run(i) for i in range(RUNS)))
    finally:
        server.close()
        for writer in held:
            writer.close()
    hung = [out for code, out in results if code is None]
    assert not hung, f"{len(hung)} of {RUNS} runs hung after done; one of them:\n{hung[0]}"
    for code, out in results:
        assert code == 0, out
        assert "■ done (exit 0)" in out, out
        assert "not delivered" in out, out  # the failure is told, not hidden
