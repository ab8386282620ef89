"""Fixtures for integration tests against a real OpenSSH sshd and a real Prometheus.

Servers come from ``servers.py``; they run on 127.0.0.1 and are stopped by pid at teardown.
When a server cannot be found or started: ``pytest.fail`` under ``CI=true`` (CI must never skip
them), ``pytest.skip`` with the reason elsewhere (a developer without the packages or root).

Fixtures:
    sshd, sshd_jump        session-scoped SshServer (the second one for jump-host tests)
    sshd_factory           function-scoped: ``sshd_factory(max_sessions=10) -> SshServer``
    metrics_exporter       session-scoped MetricsExporter (``.set(name, labels, value)``)
    prometheus_live        session-scoped PrometheusServer scraping metrics_exporter every 1 s
    prometheus_backfilled  function-scoped: ``prometheus_backfilled([Series, ...]) -> PrometheusServer``

Every test in this directory gets the ``integration`` marker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import NoReturn, TypeVar

import pytest
from servers import (
    MetricsExporter,
    PrometheusServer,
    Series,
    ServerUnavailable,
    SshServer,
    in_ci,
    start_prometheus,
    start_sshd,
)

T = TypeVar("T")
HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


def unavailable(reason: str) -> NoReturn:
    """Fail under CI=true, skip elsewhere."""
    if in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def _start(what: str, start: Callable[[], T]) -> T:
    try:
        return start()
    except ServerUnavailable as exc:
        unavailable(f"{what} unavailable: {exc}")


@pytest.fixture(scope="session")
def sshd() -> Iterator[SshServer]:
    server = _start("sshd", start_sshd)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sshd_jump() -> Iterator[SshServer]:
    server = _start("sshd (jump host)", start_sshd)
    yield server
    server.stop()


@pytest.fixture
def sshd_factory() -> Iterator[Callable[..., SshServer]]:
    started: list[SshServer] = []

    def factory(*, max_sessions: int = 1000) -> SshServer:
        server = _start("sshd", lambda: start_sshd(max_sessions=max_sessions))
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def metrics_exporter() -> Iterator[MetricsExporter]:
    exporter = MetricsExporter().start()
    yield exporter
    exporter.stop()


@pytest.fixture(scope="session")
def prometheus_live(metrics_exporter: MetricsExporter) -> Iterator[PrometheusServer]:
    server = _start(
        "prometheus", lambda: start_prometheus(scrape_targets=[metrics_exporter.target])
    )
    yield server
    server.stop()


@pytest.fixture
def prometheus_backfilled() -> Iterator[Callable[[Iterable[Series]], PrometheusServer]]:
    started: list[PrometheusServer] = []

    def factory(series: Iterable[Series]) -> PrometheusServer:
        server = _start("prometheus", lambda: start_prometheus(series=series))
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()
