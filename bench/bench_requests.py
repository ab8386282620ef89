"""Operator requests: how soon a driving process carries out a request from another terminal.

Run: ``.venv/bin/python bench/bench_requests.py [--requests N]``

A real Session drives the sample estate (simulated, time scale 0) to production's entry approval
and waits there; a thread plays the other terminal, sending ``pause`` and ``unpause`` requests
through the history with :func:`send_request`, as ``sluice pause`` does. Measured: request →
answer latency (median, worst) against the floor of the same run — writing a request and reading
it back once, with nobody to carry it out. The goal (issue 15) is "within a second"; the driver
polls every ``POLL_SECONDS``, so the latency is about half of that on average.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

from sluice.engine.app.governance import POLL_SECONDS, send_request
from sluice.engine.app.session import Session
from sluice.engine.model.estate import load_estate
from sluice.engine.store import requests as store
from sluice.engine.store.history import History
from sluice.engine.support.clock import Clock

SAMPLE = Path(__file__).resolve().parents[1] / "sample_estate.toml"


def other_terminal(path: Path, estate: str, count: int, out: list[float]) -> None:
    history = History.open(path)
    try:
        for i in range(count):
            started = time.perf_counter()
            answer = send_request(history, estate, "pause" if i % 2 == 0 else "unpause")
            assert answer.status == "done", answer
            out.append(time.perf_counter() - started)
    finally:
        history.close()


def floor(path: Path, estate: str, count: int) -> float:
    history = History.open(path)
    try:
        times = []
        for _ in range(count):
            started = time.perf_counter()
            req = store.add_request(history, estate=estate, actor="b", host="h", action="noop")
            store.request(history, req)
            times.append(time.perf_counter() - started)
            store.expire_request(history, req, "bench floor")
        return statistics.median(times)
    finally:
        history.close()


async def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(SAMPLE, Path(tmp) / "estate.toml")
        estate = load_estate(Path(tmp) / "estate.toml")
        session = Session.open(estate)
        rollout = session.new_rollout(session.plan("postgres-operator", "2.0.1"), clock=Clock(0))
        task = asyncio.ensure_future(session.drive(rollout))
        while rollout.state != "awaiting_entry":
            await asyncio.sleep(0.01)
        latencies: list[float] = []
        thread = threading.Thread(
            target=other_terminal, args=(estate.history_path, estate.name, count, latencies)
        )
        thread.start()
        while thread.is_alive():
            await asyncio.sleep(0.01)
        rollout.abort("bench over")
        await task
        session.close()
        base = floor(estate.history_path, estate.name, count)
    median, worst = statistics.median(latencies), max(latencies)
    print(f"requests: {count}, driver polls every {POLL_SECONDS:.2f}s")
    print(f"request → answer: median {median * 1000:.0f} ms, worst {worst * 1000:.0f} ms")
    print(f"floor (write + read one request): {base * 1000:.2f} ms")
    print(f"ratio median/floor: {median / base:.0f}×; worst within a second: {worst < 1.0}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20)
    asyncio.run(main(parser.parse_args().requests))
