"""`sluice run` delivers [[notify]] webhooks end to end (a real aiohttp receiver on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from aiohttp import web

ESTATE = """
[estate]
name = "notify-test"

[[channels]]
name = "dev"
max_parallel = 2

[[channels]]
name = "prod"
gate = "manual"

[targets.a]
channel = "dev"
executor = "sim"

[targets.b]
channel = "prod"
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
events = ["wave_done", "awaiting_approval", "rollout_finished"]
"""


@pytest.mark.timeout(60)
async def test_run_posts_chosen_events_to_the_webhook(tmp_path: Path) -> None:
    received: list[dict] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(json.loads(await request.read()))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        estate = tmp_path / "estate.toml"
        estate.write_text(ESTATE.replace("{port}", str(port)))
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sluice.cli",
            "run",
            str(estate),
            "m@2",
            "--headless",
            "--time-scale",
            "0",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 50)
    finally:
        await runner.cleanup()
    assert process.returncode == 4, (out, err)  # stopped at the manual prod gate
    names = [body.get("event") or body.get("name") for body in received]
    assert "wave_done" in names and "awaiting_approval" in names and "rollout_finished" in names, (
        received
    )
