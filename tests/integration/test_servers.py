"""The integration fixtures work for real: sshd logins, host-key checks, Prometheus data."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import asyncssh
import pytest
from servers import MetricsExporter, PrometheusServer, Series, SshServer


def connect(server: SshServer, known_hosts: Path | None = None, **kwargs: object):
    """asyncssh.connect to server as its user with its client key (an async context manager)."""
    return asyncssh.connect(
        server.host,
        server.port,
        username=server.user,
        client_keys=[str(server.client_key_path)],
        known_hosts=str(known_hosts or server.known_hosts_path),
        connect_timeout=10,
        **kwargs,
    )


@pytest.mark.timeout(60)
async def test_ssh_runs_a_command(sshd: SshServer) -> None:
    async with connect(sshd) as conn:
        result = await conn.run("echo hi", check=True)
    assert result.stdout == "hi\n"
    assert sshd.user != "root"  # root's ~/.bashrc costs ~170 ms per command here


@pytest.mark.timeout(60)
async def test_wrong_host_key_is_refused(sshd: SshServer, tmp_path: Path) -> None:
    wrong = sshd.wrong_known_hosts(tmp_path / "wrong_known_hosts")
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        async with connect(sshd, known_hosts=wrong):
            pass
    empty = sshd.empty_known_hosts(tmp_path / "empty_known_hosts")
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        async with connect(sshd, known_hosts=empty):
            pass


@pytest.mark.timeout(60)
async def test_connection_count_tracks_open_connections(sshd: SshServer) -> None:
    assert sshd.wait_for_connection_count(0) == 0
    async with connect(sshd) as conn:
        # Several sessions over one connection: still one connection.
        results = await asyncio.gather(*(conn.run("true", check=True) for _ in range(5)))
        assert all(r.exit_status == 0 for r in results)
        assert sshd.connection_count() == 1
        async with connect(sshd):
            assert sshd.connection_count() == 2
    assert sshd.wait_for_connection_count(0) == 0


@pytest.mark.timeout(60)
async def test_kill_session_children_cuts_connections(sshd: SshServer) -> None:
    async with connect(sshd) as conn:
        await conn.run("true", check=True)
        assert sshd.kill_session_children() == 1
        await asyncio.wait_for(conn.wait_closed(), 10)
        with pytest.raises((asyncssh.Error, OSError)):
            await conn.run("true", check=True)
    async with connect(sshd) as conn:  # the listener survived
        assert (await conn.run("echo again", check=True)).stdout == "again\n"


@pytest.mark.timeout(60)
async def test_jump_host(sshd: SshServer, sshd_jump: SshServer) -> None:
    async with connect(sshd_jump) as jump, connect(sshd, tunnel=jump) as conn:
        assert (await conn.run("echo via-jump", check=True)).stdout == "via-jump\n"
        assert sshd_jump.connection_count() == 1
        assert sshd.connection_count() == 1


@pytest.mark.timeout(60)
async def test_max_sessions_is_configurable(sshd_factory: Callable[..., SshServer]) -> None:
    server = sshd_factory(max_sessions=2)
    async with connect(server) as conn:
        first = await conn.create_process("sleep 30")
        second = await conn.create_process("sleep 30")
        with pytest.raises(asyncssh.ChannelOpenError):
            await conn.create_process("true")
        first.close()
        second.close()


@pytest.mark.timeout(60)
def test_backfilled_prometheus_answers_at_explicit_times(
    prometheus_backfilled: Callable[[Iterable[Series]], PrometheusServer],
) -> None:
    t0 = float(int(time.time()) - 3600)
    points = [(t0 + 10 * i, 0.1 + 0.01 * i) for i in range(30)]
    prom = prometheus_backfilled(
        [
            Series("pg_p99_seconds", {"env": "eph-101"}, points),
            Series("pg_errors_total", {"env": "eph-101"}, [(t0, 1), (t0 + 60, 7)], kind="counter"),
        ]
    )
    result = prom.query('pg_p99_seconds{env="eph-101"}', at=t0 + 50)
    assert [float(r["value"][1]) for r in result] == [pytest.approx(0.15)]
    increase = prom.query('increase(pg_errors_total{env="eph-101"}[2m])', at=t0 + 60)
    assert float(increase[0]["value"][1]) > 0
    assert prom.query('pg_p99_seconds{env="eph-101"}', at=t0 - 600) == []


@pytest.mark.timeout(60)
def test_live_exporter_values_reach_prometheus(
    prometheus_live: PrometheusServer, metrics_exporter: MetricsExporter
) -> None:
    metrics_exporter.set("sluice_test_gauge", {"env": "live-1"}, 0.1)
    result = prometheus_live.wait_for_series('sluice_test_gauge{env="live-1"}', deadline=20)
    assert float(result[0]["value"][1]) == 0.1
    metrics_exporter.set("sluice_test_gauge", {"env": "live-1"}, 0.7)
    prometheus_live.wait_for_series('sluice_test_gauge{env="live-1"}', deadline=10, value=0.7)
