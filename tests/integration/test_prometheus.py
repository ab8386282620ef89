"""The Prometheus check source against a real Prometheus on 127.0.0.1.

Backfilled (promtool, before start): deterministic data queried at explicit times through a
frozen clock — baselines over a window, breaches of ``max`` and ``max_increase``, empty results,
several series with and without ``aggregate``, NaN/Inf, bad PromQL. Live (a scraping
Prometheus and an exporter whose values the test sets): ``sluice run --headless`` halts when a
value rises mid-soak, and goes inconclusive — never passes — when Prometheus stops mid-soak.
Secrets given via ``{env.X}`` reach the requests but not the output or the history file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from servers import (
    HOST,
    MetricsExporter,
    PrometheusServer,
    Series,
    ServerUnavailable,
    in_ci,
    start_prometheus,
)

from sluice.engine.checks.base import Reading, create_check
from sluice.engine.checks.prometheus import PrometheusCheck, PrometheusError
from sluice.engine.model.estate import Estate, load_estate
from sluice.engine.model.template import MASK, Context
from sluice.engine.rollout.gate import FAIL, INCONCLUSIVE, PASS, Gate, classify
from sluice.engine.support.clock import Clock
from sluice.engine.support.resources import Resources

REPO = Path(__file__).resolve().parents[2]
SLUICE = str(Path(sys.executable).with_name("sluice"))
SECRET = "prom-s3cr3t-T0KEN"
STEP = 15
#: Backfilled data starts two hours ago, on a minute boundary.
T0 = float(int(time.time()) // 60 * 60 - 7200)
METRIC = "sluice_p99_seconds"
PODS = "sluice_pods_p99_seconds"
QUERY = METRIC + '{env="{target}"}'


def points(start: float, end: float, value: float | Callable[[int], float]) -> list:
    """Samples every STEP seconds from start to end inclusive."""
    count = int((end - start) // STEP) + 1
    return [(start + i * STEP, value(i) if callable(value) else value) for i in range(count)]


def backfill_data() -> list[Series]:
    def spiky(i: int) -> float:
        return 0.5 if i % 5 == 4 else 0.12  # a spike every fifth sample: median 0.12, mean 0.196

    return [
        Series(METRIC, {"env": "steady"}, points(T0, T0 + 1200, spiky)),
        Series(
            METRIC,
            {"env": "regress"},
            points(T0, T0 + 600, 0.10) + points(T0 + 615, T0 + 1200, 0.13),
        ),
        Series(
            METRIC,
            {"env": "breach"},
            points(T0, T0 + 600, 0.10) + points(T0 + 615, T0 + 1200, 0.40),
        ),
        Series(METRIC, {"env": "nan"}, points(T0, T0 + 1200, float("nan"))),
        Series(METRIC, {"env": "inf"}, points(T0, T0 + 1200, float("inf"))),
        Series(PODS, {"env": "many", "pod": "a"}, points(T0, T0 + 1200, 0.10)),
        Series(PODS, {"env": "many", "pod": "b"}, points(T0, T0 + 1200, 0.20)),
        Series(PODS, {"env": "many", "pod": "c"}, points(T0, T0 + 1200, 0.30)),
        Series(PODS, {"env": "gappy", "pod": "a"}, points(T0, T0 + 1200, 0.10)),
        Series(PODS, {"env": "gappy", "pod": "b"}, points(T0, T0 + 1200, float("nan"))),
    ]


class FrozenClock(Clock):
    """Engine time stopped at ``at``: queries are evaluated at that instant."""

    def __init__(self, at: float):
        super().__init__(1.0)
        self.at = at

    def now(self) -> float:  # type: ignore[override]
        return self.at


@pytest.fixture(scope="module")
def prom() -> Iterator[PrometheusServer]:
    """One backfilled Prometheus for the module (the data is read-only)."""
    server = start_or_give_up(lambda: start_prometheus(series=backfill_data()))
    yield server
    server.stop()


def start_or_give_up(start: Callable[[], PrometheusServer]) -> PrometheusServer:
    try:
        return start()
    except ServerUnavailable as exc:
        reason = f"prometheus unavailable: {exc}"
        if in_ci():
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)


@pytest.fixture
async def resources() -> AsyncIterator[Resources]:
    res = Resources()
    yield res
    await res.close()


def estate_doc(
    targets: Iterable[str],
    checks: dict[str, Any],
    executor: dict[str, Any] | None = None,
    **channel: Any,
) -> dict[str, Any]:
    return {
        "estate": {"name": "prom-test", "history": "history.db"},
        "channels": [{"name": "canary", "checks": list(checks), **channel}],
        "targets": {t: {"channel": "canary", "executor": "deploy"} for t in targets},
        "executors": {"deploy": executor or {"kind": "simulated", "duration": "0s"}},
        "checks": checks,
        "modules": {"pg": {"versions": ["1.0", "2.0"], "initial": "1.0"}},
    }


def write_estate(path: Path, doc: dict[str, Any]) -> Estate:
    path.write_text(tomli_w.dumps(doc))
    return load_estate(path)


def make_check(
    tmp_path: Path, url: str, resources: Resources, at: float, **settings: Any
) -> PrometheusCheck:
    check = {"source": "prometheus", "url": url, "query": QUERY, **settings}
    estate = write_estate(tmp_path / "estate.toml", estate_doc(["t"], {"p99": check}))
    source = create_check(estate.checks["p99"], estate, FrozenClock(at), resources)
    assert isinstance(source, PrometheusCheck)
    return source


def ctx(target: str) -> Context:
    return Context(
        target=target, channel="canary", module="pg", version="2.0", previous_version="1.0"
    )


# ---------------------------------------------------------------------------------------------
# backfilled data


@pytest.mark.timeout(60)
async def test_baseline_is_the_median_over_the_window(prom, tmp_path, resources):
    windowed = make_check(tmp_path, prom.url, resources, T0 + 1200, baseline_window="10m")
    baseline = await windowed.baseline(ctx("steady"))
    # Spikes of 0.5 every fifth sample move the mean to ~0.2; the median stays at 0.12.
    assert baseline.value == pytest.approx(0.12)
    assert baseline.detail.startswith("median of ") and baseline.detail.endswith(" over 10m00s")
    instant = make_check(tmp_path, prom.url, resources, T0 + 1200 - STEP)  # on a spike
    assert (await instant.baseline(ctx("steady"))).value == pytest.approx(0.5)
    empty = await windowed.baseline(ctx("absent"))
    assert empty == Reading(detail="no data in the last 10m00s")


@pytest.mark.timeout(60)
async def test_breach_of_max_fails_the_gate(prom, tmp_path, resources):
    check = make_check(tmp_path, prom.url, resources, T0 + 900, max=0.25)
    spec = load_estate(tmp_path / "estate.toml").checks["p99"]
    gate = Gate([spec], ["breach", "regress"])
    for target in ("breach", "regress"):
        gate.record("p99", target, await check.measure(ctx(target)))
    assert gate.series[("p99", "breach")].values == [pytest.approx(0.40)]
    verdict, reasons = gate.final_verdict()
    assert verdict == "failed"
    assert reasons == ["p99 on breach: 1 failed measurement(s) > limit 0 (0.4 > max 0.25)"]


@pytest.mark.timeout(60)
async def test_breach_of_max_increase_against_a_windowed_baseline(prom, tmp_path, resources):
    before = make_check(tmp_path, prom.url, resources, T0 + 600, baseline_window="10m")
    baseline = await before.baseline(ctx("regress"))
    assert baseline.value == pytest.approx(0.10)
    after = make_check(
        tmp_path, prom.url, resources, T0 + 900, max=0.25, max_increase="20%", baseline_window="10m"
    )
    spec = load_estate(tmp_path / "estate.toml").checks["p99"]
    reading = await after.measure(ctx("regress"))
    assert reading.value == pytest.approx(0.13)
    assert classify(spec, reading, baseline.value) == (
        FAIL,
        "0.13 is +30% over baseline 0.1 (max +20%)",
    )
    steady_base = await after.baseline(ctx("steady"))
    steady_now = await after.measure(ctx("steady"))
    assert classify(spec, steady_now, steady_base.value)[0] == PASS


@pytest.mark.timeout(60)
async def test_empty_nan_and_inf_are_no_data(prom, tmp_path, resources):
    check = make_check(tmp_path, prom.url, resources, T0 + 900, max=0.25)
    spec = load_estate(tmp_path / "estate.toml").checks["p99"]
    empty = await check.measure(ctx("absent"))
    assert empty == Reading(detail="no data (empty result)")
    assert classify(spec, empty, None) == (INCONCLUSIVE, "no data (empty result)")
    assert await check.measure(ctx("nan")) == Reading(detail="no data (NaN)")
    assert await check.measure(ctx("inf")) == Reading(detail="no data (Inf)")


@pytest.mark.timeout(60)
async def test_several_series_need_aggregate(prom, tmp_path, resources):
    pods = PODS + '{env="{target}"}'
    plain = make_check(tmp_path, prom.url, resources, T0 + 900, query=pods)
    reading = await plain.measure(ctx("many"))
    assert reading.value is None
    assert reading.error == (
        f'the query returned 3 series ({PODS}{{env="many", pod="a"}}, '
        f'{PODS}{{env="many", pod="b"}}, …), expected one: narrow it, or set aggregate = '
        '"max" | "min" | "mean" | "sum" | "median"'
    )
    for how, expected in [("max", 0.3), ("min", 0.1), ("mean", 0.2), ("sum", 0.6), ("median", 0.2)]:
        folded = make_check(tmp_path, prom.url, resources, T0 + 900, query=pods, aggregate=how)
        reading = await folded.measure(ctx("many"))
        assert reading.value == pytest.approx(expected), how
        assert reading.detail == f"{how} of 3 series"
    # One series without a number makes the aggregate no data, never a healthier maximum.
    folded = make_check(tmp_path, prom.url, resources, T0 + 900, query=pods, aggregate="max")
    assert await folded.measure(ctx("gappy")) == Reading(detail="no data (1 of 2 series NaN/Inf)")
    windowed = make_check(tmp_path, prom.url, resources, T0 + 900, query=pods, baseline_window="5m")
    assert (await windowed.baseline(ctx("many"))).error.startswith("the query returned 3 series")
    windowed = make_check(
        tmp_path, prom.url, resources, T0 + 900, query=pods, baseline_window="5m", aggregate="sum"
    )
    assert (await windowed.baseline(ctx("many"))).value == pytest.approx(0.6)


@pytest.mark.timeout(60)
async def test_scalar_and_range_vector_results(prom, tmp_path, resources):
    scalar = make_check(tmp_path, prom.url, resources, T0 + 900, query=f"scalar({QUERY}) * 2")
    assert (await scalar.measure(ctx("regress"))).value == pytest.approx(0.26)
    ranged = make_check(tmp_path, prom.url, resources, T0 + 900, query=QUERY + "[5m]")
    assert (await ranged.measure(ctx("regress"))).error == (
        "the query returns a range vector; use an instant vector (e.g. wrap it in avg_over_time(…))"
    )


@pytest.mark.timeout(60)
async def test_promql_syntax_error_carries_prometheus_message(prom, tmp_path, resources):
    check = make_check(tmp_path, prom.url, resources, T0 + 900, query="sum(rate(" + QUERY + "[1m])")
    reading = await check.measure(ctx("steady"))
    assert reading.value is None and reading.error is not None
    assert reading.error.startswith('Prometheus bad_data: invalid parameter "query": ')
    assert "parse error" in reading.error


@pytest.mark.timeout(60)
async def test_http_errors_and_history(prom, tmp_path, resources):
    wrong_path = make_check(tmp_path, prom.url + "/nope", resources, T0 + 900)
    error = (await wrong_path.measure(ctx("steady"))).error
    assert error is not None and error.startswith(f"{prom.url}/nope: HTTP 404 Not Found")
    check = make_check(tmp_path, prom.url, resources, T0 + 900)
    history = await check.history(ctx("regress"), T0 + 540, T0 + 720, 60)
    assert history == [
        (T0 + 540, pytest.approx(0.10)),
        (T0 + 600, pytest.approx(0.10)),
        (T0 + 660, pytest.approx(0.13)),
        (T0 + 720, pytest.approx(0.13)),
    ]
    assert await check.history(ctx("nan"), T0, T0 + 600, 60) == []  # gaps, not zeros
    with pytest.raises(PrometheusError, match="HTTP 404"):
        await wrong_path.history(ctx("regress"), T0, T0 + 600, 60)


@pytest.mark.timeout(60)
async def test_prometheus_stopped_gives_errors_then_the_error_limit_never_a_pass(
    tmp_path, resources, monkeypatch
):
    monkeypatch.setenv("PROM_TOKEN", SECRET)
    own = start_or_give_up(lambda: start_prometheus(series=backfill_data()))
    try:
        check = make_check(
            tmp_path,
            own.url + "/?auth={env.PROM_TOKEN}",
            resources,
            T0 + 900,
            max=0.25,
            token="{env.PROM_TOKEN}",
            consecutive_error_limit=2,
        )
        spec = load_estate(tmp_path / "estate.toml").checks["p99"]
        gate = Gate([spec], ["steady"])
        assert gate.record("p99", "steady", await check.measure(ctx("steady")))[0] == PASS
    finally:
        own.stop()
    outcomes, errors = [], []
    for _ in range(3):
        reading = await check.measure(ctx("steady"))
        assert reading.error is not None
        errors.append(reading.error)
        assert SECRET not in reading.error and MASK in reading.error
        outcomes.append(gate.record("p99", "steady", reading)[0])
        assert gate.final_verdict()[0] != "passed"
    assert outcomes == ["error"] * 3
    # The pooled keep-alive connection may see the shutdown first; new ones are refused.
    assert errors[0].endswith(("Connection refused", "the server closed the connection"))
    assert errors[-1] == (
        f"{own.url}/?auth={MASK}: cannot connect to 127.0.0.1:{own.port}: Connection refused"
    )
    verdict, reasons = gate.early_verdict() or ("", [])
    assert verdict == "inconclusive"
    assert reasons[0].startswith("p99 on steady: 3 consecutive errors > limit 2")


# ---------------------------------------------------------------------------------------------
# live: through `sluice run --headless --json`


@dataclass
class Run:
    """A ``sluice run`` subprocess whose NDJSON events the test reads as they come."""

    process: asyncio.subprocess.Process
    events: list[dict[str, Any]]
    stdout: list[str]

    async def until(self, predicate: Callable[[dict[str, Any]], bool], deadline: float) -> dict:
        """Read events until one satisfies ``predicate`` (within ``deadline`` seconds)."""
        for event in self.events:
            if predicate(event):
                return event
        assert self.process.stdout is not None
        async with asyncio.timeout(deadline):
            while True:
                raw = await self.process.stdout.readline()
                if not raw:
                    raise AssertionError(f"sluice exited before the event: {self.stdout[-5:]}")
                line = raw.decode()
                self.stdout.append(line)
                event = json.loads(line)
                self.events.append(event)
                if predicate(event):
                    return event

    async def finish(self, deadline: float) -> tuple[int, str]:
        """Wait for exit; the exit code and stderr."""
        assert self.process.stdout is not None and self.process.stderr is not None
        async with asyncio.timeout(deadline):
            rest, err = await self.process.communicate()
        for line in rest.decode().splitlines():
            self.stdout.append(line + "\n")
            self.events.append(json.loads(line))
        assert self.process.returncode is not None
        return self.process.returncode, err.decode()


@contextlib.asynccontextmanager
async def sluice_run(
    estate: Path, *args: str, env: dict[str, str] | None = None
) -> AsyncIterator[Run]:
    process = await asyncio.create_subprocess_exec(
        SLUICE,
        "run",
        str(estate),
        "pg@2.0",
        "--headless",
        "--json",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
        cwd=estate.parent,
        limit=2**22,
    )
    try:
        yield Run(process, [], [])
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def soak_sample(target: str, outcome: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: (
        e["kind"] == "sample"
        and e["phase"] == "soak"
        and e["target"] == target
        and e["outcome"] == outcome
    )


def live_check(url: str, metric: str, **more: Any) -> dict[str, Any]:
    return {
        "source": "prometheus",
        "url": url,
        "query": metric + '{env="{target}"}',
        "max": 0.25,
        "interval": "1s",
        **more,
    }


@pytest.mark.timeout(90)
async def test_value_raised_mid_soak_halts_sluice_run(
    prometheus_live: PrometheusServer, metrics_exporter: MetricsExporter, tmp_path
):
    metric = "sluice_live_p99_seconds"
    metrics_exporter.set(metric, {"env": "live-a"}, 0.1)
    await asyncio.to_thread(prometheus_live.wait_for_series, metric, 20.0)
    doc = estate_doc(["live-a"], {"p99": live_check(prometheus_live.url, metric)}, soak="60s")
    estate = tmp_path / "estate.toml"
    write_estate(estate, doc)
    async with sluice_run(estate) as run:
        passed = await run.until(soak_sample("live-a", "pass"), deadline=30)
        assert passed["value"] == pytest.approx(0.1)
        metrics_exporter.set(metric, {"env": "live-a"}, 0.5)  # the regression, mid-soak
        failed = await run.until(soak_sample("live-a", "fail"), deadline=20)
        assert failed["reason"] == "0.5 > max 0.25"
        code, stderr = await run.finish(deadline=20)
    assert code == 1, stderr
    gate = next(e for e in run.events if e["kind"] == "gate")
    assert gate["verdict"] == "failed"
    assert gate["early"] is True  # halted at once, not after the 60 s soak
    finished = run.events[-1]
    assert finished["kind"] == "rollout_finished" and finished["outcome"] == "halted"


@pytest.mark.timeout(90)
async def test_prometheus_stopped_mid_soak_is_inconclusive_through_sluice_run(
    metrics_exporter: MetricsExporter, tmp_path
):
    metric = "sluice_stopped_p99_seconds"
    metrics_exporter.set(metric, {"env": "live-b"}, 0.1)
    own = start_or_give_up(lambda: start_prometheus(scrape_targets=[metrics_exporter.target]))
    try:
        await asyncio.to_thread(own.wait_for_series, metric, 20.0)
        check = live_check(own.url, metric, consecutive_error_limit=2, timeout="2s")
        estate = tmp_path / "estate.toml"
        write_estate(estate, estate_doc(["live-b"], {"p99": check}, soak="60s"))
        async with sluice_run(estate) as run:
            await run.until(soak_sample("live-b", "pass"), deadline=30)
            own.stop()
            error = await run.until(soak_sample("live-b", "error"), deadline=20)
            # The pooled keep-alive connection may see the shutdown first; new ones are refused.
            assert error["reason"].endswith(
                ("Connection refused", "the server closed the connection")
            )
            code, stderr = await run.finish(deadline=30)
    finally:
        own.stop()
    assert code == 1, stderr
    gates = [e for e in run.events if e["kind"] == "gate"]
    assert [g["verdict"] for g in gates] == ["inconclusive"]
    assert gates[0]["reasons"][0].startswith("p99 on live-b: 3 consecutive errors > limit 2")
    samples = [e["outcome"] for e in run.events if e["kind"] == "sample" and e["phase"] == "soak"]
    assert samples[-3:] == ["error"] * 3


class RecordingServer:
    """A deploy API and a health endpoint in a thread (the sluice subprocess calls them)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []
        self.port = 0
        self._ready = threading.Event()
        self._stop: Any = None
        self._loop: Any = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def _main(self) -> None:
        from aiohttp import web

        async def any_request(request: web.Request) -> web.Response:
            self.seen.append(
                (request.method, request.path_qs, dict(request.headers), await request.read())
            )
            if request.path == "/deploy":
                # An API that echoes what it got, secret included: sluice must mask it.
                return web.json_response(
                    {"id": 9, "echo": request.headers.get("Authorization")}, status=201
                )
            return web.json_response({"checks": {"db": {"latency_ms": 3}}})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", any_request)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, HOST, 0)
        await site.start()
        self.port = runner.addresses[0][1]
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def __enter__(self) -> RecordingServer:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)


@pytest.mark.timeout(90)
async def test_secret_token_reaches_requests_but_not_output_or_history(
    prometheus_live: PrometheusServer, metrics_exporter: MetricsExporter, tmp_path
):
    metric = "sluice_secret_p99_seconds"
    metrics_exporter.set(metric, {"env": "live-c"}, 0.1)
    await asyncio.to_thread(prometheus_live.wait_for_series, metric, 20.0)
    with RecordingServer() as api:
        checks = {
            "p99": live_check(
                prometheus_live.url + "/?tenant={env.SLUICE_TOKEN}",
                metric,
                token="{env.SLUICE_TOKEN}",
            ),
            "health": {
                "source": "http",
                "url": api.url + "/healthz?key={env.SLUICE_TOKEN}",
                "headers": {"Authorization": "Bearer {env.SLUICE_TOKEN}"},
                "json_path": "checks.db.latency_ms",
                "max": 10.0,
                "interval": "1s",
            },
        }
        executor = {
            "kind": "http",
            "url": api.url + "/deploy?token={env.SLUICE_TOKEN}",
            "headers": {"Authorization": "Bearer {env.SLUICE_TOKEN}"},
            "body": {"target": "{target}", "credential": "{env.SLUICE_TOKEN}"},
        }
        estate = tmp_path / "estate.toml"
        write_estate(estate, estate_doc(["live-c"], checks, executor, soak="3s"))
        async with sluice_run(estate, env={"SLUICE_TOKEN": SECRET}) as run:
            code, stderr = await run.finish(deadline=60)
    assert code == 0, (stderr, run.stdout[-5:])
    deploy = [s for s in api.seen if s[1].startswith("/deploy")]
    assert deploy and deploy[0][1] == f"/deploy?token={SECRET}"
    assert deploy[0][2]["Authorization"] == f"Bearer {SECRET}"
    assert json.loads(deploy[0][3]) == {"target": "live-c", "credential": SECRET}
    probes = [s for s in api.seen if s[1].startswith("/healthz")]
    assert probes and all(s[2]["Authorization"] == f"Bearer {SECRET}" for s in probes)
    output = "".join(run.stdout) + stderr
    assert SECRET not in output
    started = next(e for e in run.events if e["kind"] == "apply_started")
    assert started["command"] == f"POST {api.url}/deploy?token={MASK}"
    for path in tmp_path.iterdir():
        if path.name.startswith("history.db"):
            assert SECRET.encode() not in path.read_bytes(), path.name
