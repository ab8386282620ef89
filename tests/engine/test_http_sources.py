"""HTTP probe, HTTP executor and webhook notifications against aiohttp servers on 127.0.0.1.

Every server is an ``aiohttp.web`` app served from the test's own loop. Nothing sleeps to
synchronise: tests wait for what they need (a request seen, a task done) with deadlines.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from aiohttp import web

from sluice.engine.app.notify import Notifications
from sluice.engine.checks.base import Reading, create_check
from sluice.engine.checks.http import HttpCheck
from sluice.engine.executors.base import Job, create_executor
from sluice.engine.model.estate import Estate, load_estate
from sluice.engine.model.template import MASK, Context
from sluice.engine.rollout.events import (
    Event,
    EventBus,
    GateEvaluated,
    Notice,
    OperatorAction,
    RolloutFinished,
    RolloutStarted,
    StateChanged,
    WaveFinished,
    WaveStarted,
)
from sluice.engine.rollout.gate import FAIL, PASS, classify
from sluice.engine.support.clock import Clock
from sluice.engine.support.resources import Resources

SECRET = "s3cr3t-t0ken-XYZ"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# ---------------------------------------------------------------------------------------------
# helpers


@dataclass
class Seen:
    """One request the test server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Server:
    url: str
    seen: list[Seen] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def paths(self) -> list[str]:
        return [s.path for s in self.seen]

    async def wait_for(
        self, predicate: Callable[[list[Seen]], bool], deadline: float = 5.0
    ) -> None:
        """Wait (with a deadline) until ``predicate(self.seen)`` holds."""
        async with asyncio.timeout(deadline):
            while not predicate(self.seen):
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[dict[tuple[str, str], Handler]], Awaitable[Server]]]:
    """``await serve({("GET", "/path"): handler, ...})`` → a recording Server on 127.0.0.1."""
    runners: list[web.AppRunner] = []

    async def start(routes: dict[tuple[str, str], Handler]) -> Server:
        server = Server("")

        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            body = await request.read()
            server.seen.append(Seen(request.method, request.path_qs, dict(request.headers), body))
            server.changed.set()
            return await handler(request)

        app = web.Application(middlewares=[record])
        for (method, path), handler in routes.items():
            app.router.add_route(method, path, handler)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        return server

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def resources() -> AsyncIterator[Resources]:
    res = Resources()
    yield res
    await res.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_estate(
    tmp_path: Path,
    *,
    checks: dict[str, Any] | None = None,
    executors: dict[str, Any] | None = None,
    notify: list[dict[str, Any]] | None = None,
) -> Estate:
    """A one-target estate (``dev-1`` in channel ``dev``) around the given tables, validated."""
    executors = executors or {"sim": {"kind": "simulated"}}
    doc: dict[str, Any] = {
        "estate": {"name": "test-estate"},
        "channels": [{"name": "dev", "checks": list(checks or {})}],
        "targets": {
            "dev-1": {"channel": "dev", "executor": next(iter(executors)), "vars": {"n": "7"}}
        },
        "executors": executors,
        "checks": checks or {},
        "modules": {"pg": {"versions": ["1.0", "2.0"], "initial": "1.0"}},
    }
    if notify:
        doc["notify"] = notify
    path = tmp_path / "estate.toml"
    path.write_text(tomli_w.dumps(doc))
    return load_estate(path)


CTX = Context(
    target="dev-1",
    channel="dev",
    module="pg",
    version="2.0",
    previous_version="1.0",
    vars={"n": "7"},
)


async def probe(tmp_path: Path, resources: Resources, **settings: Any) -> tuple[Reading, Any]:
    estate = make_estate(tmp_path, checks={"health": {"source": "http", **settings}})
    spec = estate.checks["health"]
    check = create_check(spec, estate, Clock(), resources)
    assert isinstance(check, HttpCheck)
    reading = await check.measure(CTX)
    await check.close()
    return reading, spec


def json_handler(data: Any, status: int = 200) -> Handler:
    async def handler(_: web.Request) -> web.Response:
        return web.json_response(data, status=status)

    return handler


def text_handler(text: str, content_type: str) -> Handler:
    async def handler(_: web.Request) -> web.Response:
        return web.Response(text=text, content_type=content_type)

    return handler


async def hang(_: web.Request) -> web.Response:
    await asyncio.Event().wait()  # released when the server shuts down
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------------
# HTTP probe


@pytest.mark.timeout(20)
async def test_probe_reads_json_path_and_the_gate_judges_it(tmp_path, serve, resources):
    server = await serve(
        {("GET", "/healthz"): json_handler({"checks": {"db": {"latency_ms": 12.5}}})}
    )
    reading, spec = await probe(
        tmp_path,
        resources,
        url=server.url + "/healthz",
        json_path="checks.db.latency_ms",
        max=10.0,
    )
    assert reading == Reading(12.5, detail=reading.detail)
    assert reading.detail.startswith("HTTP 200 in ")
    assert classify(spec, reading, None) == (FAIL, "12.5 > max 10")


@pytest.mark.timeout(20)
async def test_probe_without_json_path_reads_latency(tmp_path, serve, resources):
    server = await serve({("GET", "/ok"): json_handler({})})
    reading, spec = await probe(tmp_path, resources, url=server.url + "/ok", max=5.0)
    assert reading.error is None and reading.breach is None
    assert reading.value is not None and 0 < reading.value < 5
    assert classify(spec, reading, None)[0] == PASS


@pytest.mark.timeout(20)
async def test_probe_wrong_status_is_a_breach_never_a_pass(tmp_path, serve, resources):
    server = await serve({("GET", "/healthz"): json_handler({"ok": False}, status=503)})
    reading, spec = await probe(tmp_path, resources, url=server.url + "/healthz")
    assert reading.value is None
    assert reading.breach == "HTTP 503 Service Unavailable, expected 200"
    outcome, _ = classify(spec, reading, None)
    # The gate counts a breach as a fail (a gate that ignores `breach` sees no data): never a pass.
    assert outcome != PASS


@pytest.mark.timeout(20)
async def test_probe_slower_than_max_latency_is_a_breach(tmp_path, serve, resources):
    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(0.3)  # the behaviour under test (latency), not synchronisation
        return web.json_response({})

    server = await serve({("GET", "/slow"): slow})
    reading, spec = await probe(tmp_path, resources, url=server.url + "/slow", max_latency="100ms")
    assert reading.value is None
    assert reading.breach is not None and reading.breach.startswith("latency ")
    assert reading.breach.endswith("> max_latency 100ms")
    assert classify(spec, reading, None)[0] != PASS


@pytest.mark.timeout(20)
async def test_probe_source_failures_are_errors(tmp_path, serve, resources):
    server = await serve(
        {
            ("GET", "/hang"): hang,
            ("GET", "/text"): text_handler("fine", "text/plain"),
            ("GET", "/word"): json_handler({"v": "fast"}),
        }
    )
    timeout, _ = await probe(tmp_path, resources, url=server.url + "/hang", timeout="200ms")
    assert timeout.error == f"{server.url}/hang: timed out after 200ms"
    port = free_port()
    refused, _ = await probe(tmp_path, resources, url=f"http://127.0.0.1:{port}/x")
    assert refused.error == (
        f"http://127.0.0.1:{port}/x: cannot connect to 127.0.0.1:{port}: Connection refused"
    )
    text, _ = await probe(tmp_path, resources, url=server.url + "/text", json_path="v")
    assert text.error == "json_path v: the response is not JSON"
    word, _ = await probe(tmp_path, resources, url=server.url + "/word", json_path="v")
    assert word.error == "json_path v: not a number ('fast')"


@pytest.mark.timeout(20)
async def test_probe_no_data_cases(tmp_path, serve, resources):
    server = await serve(
        {
            ("GET", "/missing"): json_handler({"checks": {}}),
            ("GET", "/null"): json_handler({"v": None}),
            ("GET", "/nan"): text_handler('{"v": NaN}', "application/json"),
            ("GET", "/string"): json_handler({"v": "0.25"}),
            ("GET", "/list"): json_handler({"items": [{"v": 1}, {"v": 3}]}),
        }
    )
    missing, _ = await probe(
        tmp_path, resources, url=server.url + "/missing", json_path="checks.db"
    )
    assert (missing.value, missing.error) == (None, None)
    assert missing.detail == "no data (checks.db is not in the response)"
    null, _ = await probe(tmp_path, resources, url=server.url + "/null", json_path="v")
    assert (null.value, null.error, null.detail) == (None, None, "no data (v is null)")
    nan, _ = await probe(tmp_path, resources, url=server.url + "/nan", json_path="v")
    assert (nan.value, nan.error) == (None, None)
    string, _ = await probe(tmp_path, resources, url=server.url + "/string", json_path="$.v")
    assert string.value == 0.25
    indexed, _ = await probe(tmp_path, resources, url=server.url + "/list", json_path="items.1.v")
    assert indexed.value == 3.0


@pytest.mark.timeout(20)
async def test_probe_sends_secret_headers_and_never_shows_them(
    tmp_path, serve, resources, monkeypatch
):
    monkeypatch.setenv("PROBE_TOKEN", SECRET)
    server = await serve({("GET", "/t/{n}"): hang})
    reading, _ = await probe(
        tmp_path,
        resources,
        url=server.url + "/t/{vars.n}?key={env.PROBE_TOKEN}",
        headers={"Authorization": "Bearer {env.PROBE_TOKEN}", "X-Target": "{target}"},
        timeout="200ms",
    )
    seen = server.seen[0]
    assert seen.path == f"/t/7?key={SECRET}"
    assert seen.headers["Authorization"] == f"Bearer {SECRET}"
    assert seen.headers["X-Target"] == "dev-1"
    assert reading.error == f"{server.url}/t/7?key={MASK}: timed out after 200ms"


# ---------------------------------------------------------------------------------------------
# HTTP executor


def job(action: str = "apply") -> Job:
    return Job("dev-1", "dev", "pg", "2.0", "1.0", action, vars={"n": "7"})


class Output:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __call__(self, stream: str, line: str) -> None:
        self.lines.append((stream, line))

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


def executor_for(
    tmp_path: Path, resources: Resources, settings: dict[str, Any], scale: float = 1.0
) -> Any:
    estate = make_estate(tmp_path, executors={"deploy": {"kind": "http", **settings}})
    return create_executor(estate.executors["deploy"], estate, Clock(scale), resources)


@pytest.mark.timeout(20)
async def test_executor_posts_a_templated_body_and_succeeds(
    tmp_path, serve, resources, monkeypatch
):
    monkeypatch.setenv("CI_TOKEN", SECRET)
    server = await serve({("POST", "/deploy"): json_handler({"id": 1}, status=201)})
    executor = executor_for(
        tmp_path,
        resources,
        {
            "url": server.url + "/deploy",
            "headers": {"Authorization": "Bearer {env.CI_TOKEN}"},
            "body": {
                "ref": "main",
                "variables": {
                    "TARGET": "{target}",
                    "VERSION": "{version}",
                    "FROM": "{previous_version}",
                },
                "tags": ["{module}", "n{vars.n}"],
                "priority": 3,
                "dry_run": False,
            },
        },
    )
    output = Output()
    result = await executor.apply(job(), output)
    assert result.ok, result.reason
    (seen,) = server.seen
    assert seen.method == "POST"
    assert seen.headers["Authorization"] == f"Bearer {SECRET}"
    assert seen.json() == {
        "ref": "main",
        "variables": {"TARGET": "dev-1", "VERSION": "2.0", "FROM": "1.0"},
        "tags": ["pg", "n7"],
        "priority": 3,
        "dry_run": False,
    }
    assert executor.describe(job()) == f"POST {server.url}/deploy"
    assert SECRET not in output.text()


@pytest.mark.timeout(20)
async def test_executor_fails_on_an_unexpected_status(tmp_path, serve, resources):
    server = await serve(
        {("POST", "/deploy"): json_handler({"message": "pipeline locked"}, status=409)}
    )
    executor = executor_for(tmp_path, resources, {"url": server.url + "/deploy"})
    result = await executor.apply(job(), Output())
    assert not result.ok
    assert result.reason == 'HTTP 409 Conflict: {"message": "pipeline locked"}'
    refused = executor_for(tmp_path, resources, {"url": f"http://127.0.0.1:{free_port()}/x"})
    result = await refused.apply(job(), Output())
    assert not result.ok and "Connection refused" in result.reason


def pipeline_api(states: list[str]) -> dict[tuple[str, str], Handler]:
    """A CI API: POST /pipelines → {"id": 42}; GET /pipelines/42 walks through ``states``."""
    polls = iter(states)
    last = {"status": states[0]}

    async def create(_: web.Request) -> web.Response:
        return web.json_response({"id": 42, "web_url": "https://ci.example/p/42"}, status=201)

    async def status(request: web.Request) -> web.Response:
        assert request.match_info["id"] == "42"
        last["status"] = next(polls, last["status"])
        return web.json_response({"pipeline": {"status": last["status"]}})

    async def cancel(_: web.Request) -> web.Response:
        return web.json_response({"status": "canceled"})

    return {
        ("POST", "/pipelines"): create,
        ("GET", "/pipelines/{id}"): status,
        ("POST", "/pipelines/{id}/cancel"): cancel,
    }


def polling_settings(url: str, **more: Any) -> dict[str, Any]:
    return {
        "url": url + "/pipelines",
        "poll_url": url + "/pipelines/{response.id}",
        "poll_field": "pipeline.status",
        "poll_interval": "5s",  # × time scale 0.01 = 50 ms
        "cancel_url": url + "/pipelines/{response.id}/cancel",
        **more,
    }


@pytest.mark.timeout(20)
async def test_executor_polls_until_success(tmp_path, serve, resources):
    server = await serve(pipeline_api(["pending", "running", "running", "success"]))
    executor = executor_for(tmp_path, resources, polling_settings(server.url), scale=0.01)
    output = Output()
    result = await executor.apply(job(), output)
    assert result.ok, result.reason
    assert server.paths() == ["/pipelines"] + ["/pipelines/42"] * 4
    states = [line for _, line in output.lines if line.startswith("pipeline.status = ")]
    assert states == [f"pipeline.status = {s}" for s in ("pending", "running", "success")]
    assert "cancel" not in output.text()


@pytest.mark.timeout(20)
async def test_executor_polls_until_failure(tmp_path, serve, resources):
    server = await serve(pipeline_api(["running", "failed"]))
    executor = executor_for(tmp_path, resources, polling_settings(server.url), scale=0.01)
    result = await executor.apply(job(), Output())
    assert not result.ok
    assert result.reason == "pipeline.status is 'failed'"
    assert not any(p.endswith("/cancel") for p in server.paths())


@pytest.mark.timeout(20)
async def test_executor_timeout_cancels_the_pipeline(tmp_path, serve, resources):
    server = await serve(pipeline_api(["running"]))
    executor = executor_for(
        tmp_path, resources, polling_settings(server.url, timeout="1s"), scale=0.01
    )
    output = Output()
    result = await executor.apply(job(), output)  # real seconds: --time-scale leaves it alone
    assert not result.ok
    assert result.reason == "timed out after 1s (last: running)"
    assert server.paths()[-1] == "/pipelines/42/cancel"
    assert f"cancel: POST {server.url}/pipelines/42/cancel: HTTP 200 OK" in output.text()


@pytest.mark.timeout(20)
async def test_executor_abort_sends_cancel_then_reraises(tmp_path, serve, resources):
    server = await serve(pipeline_api(["running"]))
    executor = executor_for(tmp_path, resources, polling_settings(server.url), scale=0.01)
    output = Output()
    task = asyncio.create_task(executor.apply(job(), output))
    await server.wait_for(lambda seen: sum(s.path == "/pipelines/42" for s in seen) >= 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert server.paths()[-1] == "/pipelines/42/cancel"
    assert server.seen[-1].method == "POST"


@pytest.mark.timeout(20)
async def test_executor_abort_during_the_trigger_cannot_cancel_without_an_id(
    tmp_path, serve, resources
):
    server = await serve({("POST", "/pipelines"): hang})
    executor = executor_for(tmp_path, resources, polling_settings(server.url), scale=0.01)
    output = Output()
    task = asyncio.create_task(executor.apply(job(), output))
    await server.wait_for(lambda seen: len(seen) == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert "cannot send the cancel request: {response.id}: the response has no such field" in (
        output.text()
    )


@pytest.mark.timeout(20)
async def test_executor_poll_problems_are_retried_until_the_deadline(tmp_path, serve, resources):
    calls = {"n": 0}

    async def flaky(_: web.Request) -> web.Response:
        calls["n"] += 1
        if calls["n"] < 3:
            return web.Response(status=502, text="bad gateway")
        return web.json_response({"pipeline": {"status": "success"}})

    routes = pipeline_api(["running"])
    routes[("GET", "/pipelines/{id}")] = flaky
    server = await serve(routes)
    executor = executor_for(tmp_path, resources, polling_settings(server.url), scale=0.01)
    output = Output()
    result = await executor.apply(job(), output)
    assert result.ok, result.reason
    assert ("stderr", "poll: HTTP 502 Bad Gateway") in output.lines


@pytest.mark.timeout(20)
async def test_executor_rollback_uses_rollback_body(tmp_path, serve, resources):
    server = await serve({("POST", "/deploy"): json_handler({}, status=202)})
    executor = executor_for(
        tmp_path,
        resources,
        {
            "url": server.url + "/deploy",
            "body": {"action": "upgrade", "version": "{version}"},
            "rollback_body": {"action": "rollback", "to": "{version}"},
        },
    )
    assert (await executor.apply(job("rollback"), Output())).ok
    assert server.seen[0].json() == {"action": "rollback", "to": "2.0"}


@pytest.mark.timeout(20)
async def test_executor_secret_in_url_is_masked_everywhere(tmp_path, serve, resources, monkeypatch):
    monkeypatch.setenv("CI_TOKEN", SECRET)
    server = await serve({("POST", "/deploy"): json_handler({"echo": SECRET}, status=500)})
    executor = executor_for(
        tmp_path,
        resources,
        {"url": server.url + "/deploy?token={env.CI_TOKEN}", "body": {"t": "{env.CI_TOKEN}"}},
    )
    output = Output()
    result = await executor.apply(job(), output)
    assert server.seen[0].path == f"/deploy?token={SECRET}"
    assert server.seen[0].json() == {"t": SECRET}
    assert not result.ok
    shown = [executor.describe(job()), result.reason, output.text()]
    assert all(SECRET not in text for text in shown), shown
    assert executor.describe(job()) == f"POST {server.url}/deploy?token={MASK}"
    assert MASK in result.reason  # the echoed secret is masked, not dropped silently


# ---------------------------------------------------------------------------------------------
# notifications


def rollout_events(bus: EventBus) -> None:
    """A short rollout's events: every kind a notification can come from, plus noise."""
    bus.emit(
        RolloutStarted,
        rollout_id=7,
        estate="test-estate",
        module="pg",
        version="2.0",
        actor="ci",
        plan={},
    )
    bus.emit(WaveStarted, wave=1, channel="dev", name="dev", targets=("dev-1",))
    bus.emit(StateChanged, state="soaking", wave=1)
    bus.emit(WaveFinished, wave=1, outcome="passed")
    bus.emit(WaveStarted, wave=2, channel="prod", name="prod canary", targets=("prod-1",))
    bus.emit(StateChanged, state="awaiting_approval", wave=2)
    bus.emit(OperatorAction, action="bypass", actor="alice", reason="CVE-2024-1", wave=2)
    bus.emit(
        GateEvaluated,
        wave=2,
        verdict="failed",
        reasons=("p99 on prod-1: 0.5 > max 0.25",),
        checks={"p99": {"targets": {"prod-1": {"values": [0.5, math.nan]}}}},
    )
    bus.emit(RolloutFinished, rollout_id=7, outcome="halted", exit_code=1, summary="wave 2 failed")


def notices(events: list[Event]) -> list[str]:
    return [e.message for e in events if isinstance(e, Notice)]


@pytest.fixture
def recorded() -> Callable[[EventBus], list[Event]]:
    def attach(bus: EventBus) -> list[Event]:
        events: list[Event] = []
        bus.listen(events.append)
        return events

    return attach


@pytest.mark.timeout(20)
async def test_notifications_deliver_slack_and_json_payloads(tmp_path, serve, resources, recorded):
    server = await serve(
        {("POST", "/slack"): json_handler({}), ("POST", "/hook"): json_handler({}, status=204)}
    )
    estate = make_estate(
        tmp_path,
        notify=[
            {"url": server.url + "/slack"},
            {
                "url": server.url + "/hook",
                "format": "json",
                "events": ["gate_failed", "rollout_finished"],
            },
        ],
    )
    bus = EventBus()
    events = recorded(bus)
    notifications = Notifications(estate.notify, resources)
    notifications.start(bus)
    rollout_events(bus)
    bus.close()
    await notifications.aclose()
    slack = [s.json()["text"] for s in server.seen if s.path == "/slack"]
    head = "[test-estate] pg@2.0 (rollout #7)"
    assert slack == [
        f"{head}: wave 1 (dev) passed its gate",
        f"{head}: wave 2 (prod canary) is healthy and awaits approval",
        f"{head}: alice bypassed wave 2 (prod canary): CVE-2024-1",
        f"{head}: wave 2 (prod canary) gate FAILED: p99 on prod-1: 0.5 > max 0.25",
        f"{head}: rollout halted: wave 2 failed",
    ]
    generic = [s.json() for s in server.seen if s.path == "/hook"]
    assert [g["event"] for g in generic] == ["gate_failed", "rollout_finished"]
    assert generic[0]["data"]["kind"] == "gate"
    assert generic[0]["data"]["checks"]["p99"]["targets"]["prod-1"]["values"] == [0.5, None]
    assert generic[1]["rollout_id"] == 7 and generic[1]["module"] == "pg"
    assert notices(events) == []


@pytest.mark.timeout(20)
async def test_notifications_retry_a_500_then_deliver(tmp_path, serve, resources, recorded):
    calls = {"n": 0}

    async def flaky(_: web.Request) -> web.Response:
        calls["n"] += 1
        return web.json_response({}, status=500 if calls["n"] == 1 else 200)

    server = await serve({("POST", "/hook"): flaky})
    estate = make_estate(
        tmp_path, notify=[{"url": server.url + "/hook", "events": ["rollout_finished"]}]
    )
    bus = EventBus()
    events = recorded(bus)
    notifications = Notifications(estate.notify, resources, backoff=0.01)
    notifications.start(bus)
    bus.emit(RolloutFinished, rollout_id=1, outcome="done", exit_code=0, summary="all waves")
    await server.wait_for(lambda seen: len(seen) == 2)
    await notifications.aclose()
    assert [s.json() for s in server.seen] == [{"text": "rollout #1: rollout done: all waves"}] * 2
    assert notices(events) == []


@pytest.mark.timeout(20)
async def test_notifications_give_up_on_a_refusing_receiver_without_retrying(
    tmp_path, serve, resources, recorded
):
    server = await serve({("POST", "/hook"): json_handler({"error": "invalid"}, status=400)})
    estate = make_estate(tmp_path, notify=[{"url": server.url + "/hook", "retries": 5}])
    bus = EventBus()
    events = recorded(bus)
    notifications = Notifications(estate.notify, resources, backoff=0.01)
    notifications.start(bus)
    bus.emit(OperatorAction, action="bypass", actor="bob", reason="hotfix")
    bus.close()
    await notifications.aclose()
    assert len(server.seen) == 1
    assert notices(events) == [
        f"notification bypass not delivered after 1 attempt(s): {server.url}/hook: "
        "HTTP 400 Bad Request"
    ]


@pytest.mark.timeout(20)
async def test_a_hanging_receiver_never_blocks_the_rollout(tmp_path, serve, recorded, monkeypatch):
    monkeypatch.setenv("HOOK_TOKEN", SECRET)
    hung = await serve({("POST", "/hook"): hang})
    ok = await serve({("POST", "/ok"): json_handler({})})
    estate = make_estate(
        tmp_path,
        notify=[
            {
                "url": hung.url + "/hook?token={env.HOOK_TOKEN}",
                "headers": {"Authorization": "Bearer {env.HOOK_TOKEN}"},
                "timeout": "200ms",
                "retries": 2,
            },
            {"url": ok.url + "/ok"},
        ],
    )
    bus = EventBus()
    events = recorded(bus)
    notifications = Notifications(estate.notify, backoff=0.01)  # with an HTTP session of its own
    notifications.start(bus)
    loop = asyncio.get_running_loop()
    started = loop.time()
    rollout_events(bus)  # emitting is synchronous: a receiver cannot hold the rollout up
    assert loop.time() - started < 1.0
    # The healthy receiver gets everything while the hanging one is still timing out.
    await ok.wait_for(lambda seen: len(seen) == 5)
    assert hung.seen[0].path == f"/hook?token={SECRET}"
    assert hung.seen[0].headers["Authorization"] == f"Bearer {SECRET}"
    bus.close()
    await notifications.aclose(grace=1.5)
    assert notifications.resources._http is None  # its own session is closed
    messages = notices(events)
    assert messages[0] == (
        f"notification wave_done not delivered after 3 attempt(s): "
        f"{hung.url}/hook?token={MASK}: timed out after 200ms"
    )
    assert messages[-1].endswith("notification(s) not delivered: sluice is stopping")
    assert all(SECRET not in m for m in messages)
    assert all(SECRET not in json.dumps(e.to_dict()) for e in events)


# ---------------------------------------------------------------------------------------------
# TLS, Prometheus credentials, the example estate


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and its key), made with cryptography (asyncssh's dependency)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sluice-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
async def https_prometheus(tmp_path: Path) -> AsyncIterator[tuple[str, list[Seen]]]:
    """A fake Prometheus API over TLS (self-signed) that records what it is sent."""
    import ssl

    seen: list[Seen] = []

    async def query(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append(Seen(request.method, request.path_qs, dict(request.headers), body))
        result = [{"metric": {"env": "dev-1"}, "value": [1700000000.0, "0.042"]}]
        return web.json_response(
            {"status": "success", "data": {"resultType": "vector", "result": result}}
        )

    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    app = web.Application()
    app.router.add_post("/prom/api/v1/query", query)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
    yield f"https://127.0.0.1:{runner.addresses[0][1]}", seen
    await runner.cleanup()


async def prometheus_reading(
    tmp_path: Path, resources: Resources, url: str, **settings: Any
) -> Reading:
    check = {"source": "prometheus", "url": url, "query": 'up{env="{target}"}', **settings}
    estate = make_estate(tmp_path, checks={"p": check})
    source = create_check(estate.checks["p"], estate, Clock(), resources)
    return await source.measure(CTX)


@pytest.mark.timeout(20)
async def test_prometheus_tls_is_verified_unless_told_otherwise(
    tmp_path, https_prometheus, resources
):
    base, seen = https_prometheus
    url = base + "/prom/"
    untrusted = await prometheus_reading(tmp_path, resources, url)
    assert untrusted.error is not None
    assert untrusted.error.startswith(f"{base}/prom: TLS certificate not trusted (")
    assert seen == []
    trusted = await prometheus_reading(tmp_path, resources, url, ca="cert.pem")
    assert trusted == Reading(0.042)
    insecure = await prometheus_reading(tmp_path, resources, url, insecure=True)
    assert insecure == Reading(0.042)
    missing = await prometheus_reading(tmp_path, resources, url, ca="nope.pem")
    assert (
        missing.error
        == f"cannot load the CA file {tmp_path / 'nope.pem'}: No such file or directory"
    )


@pytest.mark.timeout(20)
async def test_prometheus_credentials_are_sent_and_masked(
    tmp_path, https_prometheus, resources, monkeypatch
):
    monkeypatch.setenv("PROM_TOKEN", SECRET)
    monkeypatch.setenv("PROM_PASSWORD", SECRET + "-pw")
    base, seen = https_prometheus
    bearer = await prometheus_reading(
        tmp_path,
        resources,
        base + "/prom",
        ca="cert.pem",
        token="{env.PROM_TOKEN}",
        headers={"X-Scope-OrgID": "team-{target}"},
    )
    assert bearer.value == 0.042
    assert seen[-1].headers["Authorization"] == f"Bearer {SECRET}"
    assert seen[-1].headers["X-Scope-OrgID"] == "team-dev-1"
    form = dict(p.split("=", 1) for p in seen[-1].body.decode().split("&"))
    assert form["query"] == "up%7Benv%3D%22dev-1%22%7D"  # the PromQL braces survive templating
    basic = await prometheus_reading(
        tmp_path,
        resources,
        base + "/prom",
        ca="cert.pem",
        username="sluice",
        password="{env.PROM_PASSWORD}",
    )
    assert basic.value == 0.042
    import base64

    expected = base64.b64encode(f"sluice:{SECRET}-pw".encode()).decode()
    assert seen[-1].headers["Authorization"] == f"Basic {expected}"
    # Down, with the secret in the URL too: the error shows the URL masked.
    down = await prometheus_reading(
        tmp_path,
        resources,
        f"http://127.0.0.1:{free_port()}/?key={{env.PROM_TOKEN}}",
        token="{env.PROM_TOKEN}",
    )
    assert down.error is not None and SECRET not in down.error and MASK in down.error
    # Both credentials at once is caught by `sluice check` (tests/engine/test_estate.py).


@pytest.mark.timeout(20)
async def test_probe_tls_default_refuses_a_self_signed_certificate(tmp_path, resources):
    import ssl

    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    app = web.Application()
    app.router.add_get("/healthz", json_handler({"ok": True}))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
    url = f"https://127.0.0.1:{runner.addresses[0][1]}/healthz"
    try:
        refused, _ = await probe(tmp_path, resources, url=url)
        assert refused.error is not None and "TLS certificate not trusted" in refused.error
        trusted, _ = await probe(tmp_path, resources, url=url, ca="cert.pem")
        assert trusted.error is None and trusted.value is not None
    finally:
        await runner.cleanup()


def test_example_estate_is_valid_and_its_queries_render() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "prometheus_estate.toml"
    estate = load_estate(example)
    from sluice.engine.model.template import render

    target = estate.targets["stg-eu-1"]
    ctx = Context(target=target.name, channel=target.channel, vars=target.vars)
    query = render(estate.checks["p99_latency"].settings["query"], ctx).text
    assert 'pg_query_seconds_bucket{env="stg-eu-1"}[2m]' in query
    assert {c.source for c in estate.checks.values()} == {"prometheus", "http"}
    assert estate.executors["gitlab"].kind == "http"
    assert len(estate.notify) == 2
