"""SIGTERM or Ctrl-C (SIGINT) while notifications drain ends `sluice run` at once (issue 12, item 2):
a real ``sluice run`` against a webhook that accepts and never answers, with a 30 s delivery
limit; the signal is sent once it has printed ``■ done``.

It must exit long before that limit — the bound below is its stop waits plus exiting, a tenth
of the limit, so a process that ignores the signal fails it by 25 s — with the rollout's exit
code (not 3, "aborted", nor death by the signal), after saying what it gave up."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest
from silent_webhook import EXITING, read_until_done, silent_server, start_run

from sluice.engine.app.notify import STOP_WAIT, Notifications
from sluice.engine.model.estate import load_estate

ESTATE = """
[estate]
name = "signal-test"

[[channels]]
name = "dev"

[targets.a]
channel = "dev"
executor = "sh"

[executors.sh]
kind = "local"
apply = "{apply}"

[modules.m]
versions = ["1", "2"]
initial = "1"

[[notify]]
url = "http://127.0.0.1:{port}/hook"
events = ["rollout_finished"]
timeout = "30s"
retries = 0
"""


@pytest.mark.parametrize(
    ("sig", "apply", "code", "last"),
    [
        (signal.SIGTERM, "true", 0, "■ done (exit 0)"),
        (signal.SIGINT, "exit 1", 1, "■ halted (exit 1)"),
    ],
)
@pytest.mark.timeout(120)
async def test_a_signal_while_notifications_drain_ends_sluice_at_once(
    tmp_path: Path, sig: signal.Signals, apply: str, code: int, last: str
) -> None:
    server, port, held = await silent_server()
    estate = tmp_path / "estate.toml"
    estate.write_text(ESTATE.replace("{port}", str(port)).replace("{apply}", apply))
    limit = Notifications(load_estate(estate).notify).drain_limit()
    assert limit == 30.0
    try:
        process = await start_run(estate)
        out: list[str] = []
        reading = asyncio.ensure_future(read_until_done(process, out))
        while not any(line.startswith(last[:2]) for line in out):  # ■ …: the rollout has ended
            assert not reading.done(), "".join(out)
            await asyncio.sleep(0.05)
        while not held:  # the notification is being sent: the drain has begun
            await asyncio.sleep(0.05)
        sent = time.monotonic()
        process.send_signal(sig)
        try:
            await asyncio.wait_for(process.wait(), limit * 2)
        finally:
            if process.returncode is None:
                process.kill()
        took = time.monotonic() - sent
        await reading
    finally:
        server.close()
        for writer in held:
            writer.close()
    text = "".join(out)
    assert last in text, text
    assert process.returncode == code, text
    assert f"1 notification(s) not delivered: {sig.name} received" in text, text
    bound = 2 * STOP_WAIT + EXITING
    assert bound <= limit / 10
    assert took < bound, (took, text)
