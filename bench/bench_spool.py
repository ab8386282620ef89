"""What spooling costs a local apply: N applies of a command, one after another, per-apply time.

Run: ``.venv/bin/python bench/bench_spool.py [--n 200]``. Run it with a checkout from before the
spool (its own venv) for the comparison; it reports wall and cpu (this process + children) per
apply for ``true`` (the fixed cost) and ``seq 1 10000`` (streaming 10,000 lines).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from sluice.engine.executors.base import Job, create_executor
from sluice.engine.model.estate import parse_estate
from sluice.engine.support.clock import Clock
from sluice.engine.support.resources import Resources


def cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


async def measure(command: str, n: int, directory: Path) -> tuple[float, float]:
    text = (
        '[estate]\nname = "b"\n[[channels]]\nname = "c"\n'
        f'[executors.x]\nkind = "local"\napply = "{command}"\n'
        '[modules.m]\nversions = ["1", "2"]\ninitial = "1"\n'
        '[targets.t]\nchannel = "c"\nexecutor = "x"\n'
    )
    path = directory / "estate.toml"
    path.write_text(text)
    estate = parse_estate(text, path)
    executor = create_executor(estate.executors["x"], estate, Clock(0), Resources())
    job = Job(
        target="t", channel="c", module="m", version="2", previous_version="1", action="apply"
    )
    lines = 0

    def sink(stream: str, line: str) -> None:
        nonlocal lines
        lines += 1

    walls = []
    began_cpu = cpu()
    for _ in range(n):
        began = time.perf_counter()
        result = await executor.apply(job, sink)
        walls.append(time.perf_counter() - began)
        assert result.ok, result.reason
    return statistics.median(walls), (cpu() - began_cpu) / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for command in ("true", "seq 1 10000"):
            wall, cpu_each = asyncio.run(measure(command, args.n, Path(tmp)))
            print(
                f"{command:>14}: median {wall * 1000:6.2f} ms wall, {cpu_each * 1000:6.2f} ms cpu per apply"
            )


if __name__ == "__main__":
    main()
