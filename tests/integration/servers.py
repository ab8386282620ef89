"""Real servers for integration tests: an OpenSSH sshd and a Prometheus on 127.0.0.1.

Plain helpers with no pytest dependency (the fixtures live in ``conftest.py``). Every server is
started on a free loopback port with its files in its own temporary directory, polled for
readiness against a deadline (never a fixed sleep), and stopped by process id. A server that
cannot be found or started raises :class:`ServerUnavailable`; the fixtures turn that into
``pytest.fail`` under ``CI=true`` and ``pytest.skip`` elsewhere.

SSH login user
    Root's ``~/.bashrc`` on these machines runs ``pyenv init`` (~170 ms per command), so the
    sshd never logs in as root. As root, it logs in as a dedicated user ``sluicetest``
    (created with ``useradd -m -s /bin/sh`` and unlocked with ``usermod -p '*'``, because
    ``UsePAM no`` refuses a locked ``!`` account); ``/bin/sh`` is dash and reads no rc file.
    As a non-root developer, sshd runs as that developer (an unprivileged sshd can only
    authenticate its own user) and ``SetEnv HOME=<empty dir>`` keeps the developer's shell rc
    files out of the way. The authorized_keys file sits in a 755 directory outside pytest's
    0700 ``/tmp/pytest-of-*`` tree, because sshd reads it with the login user's privileges.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import math
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "ssh-keygen"
PROMETHEUS = "prometheus"
PROMTOOL = "promtool"
TEST_USER = "sluicetest"
HOST = "127.0.0.1"


class ServerUnavailable(RuntimeError):
    """A server binary is missing or the server could not be started (message says why)."""


# ---------------------------------------------------------------------------------------------
# processes


def in_ci() -> bool:
    """True when the environment says CI (``CI=true``): missing servers are failures there."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def find_binary(name: str) -> str:
    """Absolute path of an executable (PATH, then /usr/sbin and /usr/bin), or ServerUnavailable."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if found is None:
        raise ServerUnavailable(
            f"{name} not found (apt-get install openssh-server prometheus, or run `bash .ci/run`)"
        )
    return found


def _die_with_parent() -> None:
    # Safety net for a pytest killed with SIGKILL: the server gets SIGTERM from the kernel.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


_running: dict[int, Callable[[], None]] = {}


@atexit.register
def _stop_all() -> None:
    for stop in list(_running.values()):
        with contextlib.suppress(Exception):
            stop()


def _spawn(argv: Sequence[str], log_path: Path) -> subprocess.Popen[bytes]:
    # stdin/stdout/stderr all redirected: a daemon holding the caller's stdout hangs pipelines.
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )


def _alive(pid: int) -> bool:
    """Whether pid exists and is not a zombie (PID 1 here may not reap orphans)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_gone(pids: Iterable[int], deadline: float) -> bool:
    pending = set(pids)
    end = time.monotonic() + deadline
    while pending and time.monotonic() < end:
        pending = {p for p in pending if _alive(p)}
        if pending:
            time.sleep(0.02)
    return not pending


def _kill(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def child_pids(pid: int) -> list[int]:
    """Live direct children of pid, read from /proc."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            children.append(int(entry.name))
    return children


def descendant_pids(pid: int) -> list[int]:
    """Live descendants of pid (children first), read from /proc."""
    found: list[int] = []
    frontier = [pid]
    while frontier:
        nxt = [c for p in frontier for c in child_pids(p)]
        found.extend(nxt)
        frontier = nxt
    return found


def _terminate(
    proc: subprocess.Popen[bytes], extra: Sequence[int] = (), deadline: float = 5.0
) -> None:
    """SIGTERM proc (and extra pids), then SIGKILL whatever outlives the deadline."""
    pids = [proc.pid, *extra]
    _kill(pids, signal.SIGTERM)
    try:
        proc.wait(timeout=deadline)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=deadline)
    if not _wait_gone(extra, deadline):
        _kill(extra, signal.SIGKILL)
        _wait_gone(extra, deadline)


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------------
# sshd


def generate_key(path: Path, comment: str = "sluice-test") -> str:
    """Create an ed25519 key pair at path (+ path.pub); return the public key line."""
    subprocess.run(
        [find_binary(SSH_KEYGEN), "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
    return path.with_name(path.name + ".pub").read_text().strip()


def known_hosts_line(host: str, port: int, public_key_line: str) -> str:
    """``[host]:port keytype key`` (plain ``host`` for port 22), as OpenSSH and asyncssh read it."""
    keytype, key = public_key_line.split()[:2]
    name = host if port == 22 else f"[{host}]:{port}"
    return f"{name} {keytype} {key}\n"


def ensure_test_user(name: str = TEST_USER) -> str:
    """Create the login user (``useradd -m -s /bin/sh``, ``usermod -p '*'``) if missing; root only."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        if os.geteuid() != 0:
            raise ServerUnavailable(
                f"user {name!r} is missing and only root can create it"
            ) from None
        try:
            subprocess.run(
                ["useradd", "-m", "-s", "/bin/sh", name], check=True, capture_output=True
            )
        except subprocess.CalledProcessError as exc:
            with contextlib.suppress(KeyError):
                pwd.getpwnam(name)  # created concurrently by another session
                return name
            raise ServerUnavailable(f"useradd {name} failed: {exc.stderr!r}") from exc
    # `UsePAM no` refuses a locked ("!") account; '*' is unlocked but has no password.
    if os.geteuid() == 0:
        subprocess.run(["usermod", "-p", "*", name], check=True, capture_output=True)
    return name


@dataclass
class SshServer:
    """A running OpenSSH sshd on host:port that accepts ``client_key_path`` for ``user``."""

    host: str
    port: int
    user: str
    client_key_path: Path
    known_hosts_path: Path
    pid: int
    log_path: Path
    tmpdir: Path
    host_public_key: str = ""
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    def connection_count(self) -> int:
        """Open connections: sshd's per-connection children of the listener (from /proc).

        A closed connection's child exits shortly after the client closes; poll with
        :meth:`wait_for_connection_count` rather than reading once right after a close.
        """
        return len(child_pids(self.pid))

    def wait_for_connection_count(self, expected: int, deadline: float = 5.0) -> int:
        """Poll until connection_count() == expected; return the last count seen."""
        end = time.monotonic() + deadline
        count = self.connection_count()
        while count != expected and time.monotonic() < end:
            time.sleep(0.02)
            count = self.connection_count()
        return count

    def kill_session_children(self) -> int:
        """SIGKILL every per-connection sshd process (and their commands): a connection cut.

        The listener keeps running, so new connections succeed. Returns how many
        connections were cut.
        """
        connections = child_pids(self.pid)
        victims = descendant_pids(self.pid)
        _kill(victims, signal.SIGKILL)
        _wait_gone(victims, 5.0)
        return len(connections)

    def wrong_known_hosts(self, path: Path | str) -> Path:
        """Write a known_hosts naming this host:port with a *different* ed25519 key."""
        path = Path(path)
        with tempfile.TemporaryDirectory() as scratch:
            other = generate_key(Path(scratch) / "other", comment="not-the-host-key")
        path.write_text(known_hosts_line(self.host, self.port, other))
        return path

    def empty_known_hosts(self, path: Path | str) -> Path:
        """Write an empty known_hosts (the host is unknown)."""
        path = Path(path)
        path.write_text("")
        return path

    def stop(self, deadline: float = 5.0) -> None:
        """Stop the listener and every connection it spawned; remove the temp directory."""
        _running.pop(self.pid, None)
        if self._proc is not None and self._proc.returncode is None:
            _terminate(self._proc, descendant_pids(self.pid), deadline)
        shutil.rmtree(self.tmpdir, ignore_errors=True)


def _sshd_config(
    tmpdir: Path, port: int, host_key: Path, max_sessions: int, home: Path | None
) -> str:
    lines = [
        f"ListenAddress {HOST}:{port}",
        f"HostKey {host_key}",
        f"PidFile {tmpdir / 'sshd.pid'}",
        f"AuthorizedKeysFile {tmpdir / 'auth' / 'authorized_keys'}",
        "StrictModes no",
        "UsePAM no",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password",
        "MaxStartups 1000:30:2000",
        f"MaxSessions {max_sessions}",
        "AllowTcpForwarding yes",
        "X11Forwarding no",
        "PrintMotd no",
        "PrintLastLog no",
        "LogLevel VERBOSE",
        "Subsystem sftp internal-sftp",
    ]
    if home is not None:
        lines.append(f"SetEnv HOME={home}")
    return "\n".join(lines) + "\n"


def start_sshd(*, max_sessions: int = 1000, deadline: float = 10.0, attempts: int = 3) -> SshServer:
    """Start a private sshd on 127.0.0.1:<free port>; return when it accepts connections.

    Files live in a fresh 755 temp directory (removed by ``stop()``): ``ssh_host_ed25519_key``,
    ``client_key`` (+ ``.pub``), ``auth/authorized_keys``, ``known_hosts``, ``sshd_config``,
    ``sshd.log``. Raises ServerUnavailable when sshd is missing or does not come up.
    """
    sshd = find_binary(SSHD)
    root = os.geteuid() == 0
    user = ensure_test_user() if root else pwd.getpwuid(os.geteuid()).pw_name
    tmpdir = Path(tempfile.mkdtemp(prefix="sluice-sshd-"))
    try:
        tmpdir.chmod(0o755)
        host_key = tmpdir / "ssh_host_ed25519_key"
        host_public_key = generate_key(host_key, comment="sluice-test-host")
        client_key = tmpdir / "client_key"
        client_public = generate_key(client_key, comment="sluice-test-client")
        auth = tmpdir / "auth"
        auth.mkdir(mode=0o755)
        auth.chmod(0o755)
        (auth / "authorized_keys").write_text(client_public + "\n")
        (auth / "authorized_keys").chmod(0o644)
        home = None
        if not root:
            home = tmpdir / "home"
            home.mkdir()
        else:
            # sshd refuses to start without its privilege-separation directory.
            Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
        log_path = tmpdir / "sshd.log"
        config = tmpdir / "sshd_config"
        last_error = ""
        for _ in range(attempts):
            port = free_port()
            config.write_text(_sshd_config(tmpdir, port, host_key, max_sessions, home))
            proc = _spawn([sshd, "-D", "-e", "-f", str(config)], log_path)
            try:
                _wait_sshd_ready(proc, port, deadline, log_path)
            except ServerUnavailable as exc:
                last_error = str(exc)
                if proc.returncode is None:
                    _terminate(proc)
                if "Address already in use" in last_error:
                    continue  # lost the race for the free port: try another
                raise
            server = SshServer(
                host=HOST,
                port=port,
                user=user,
                client_key_path=client_key,
                known_hosts_path=tmpdir / "known_hosts",
                pid=proc.pid,
                log_path=log_path,
                tmpdir=tmpdir,
                host_public_key=host_public_key,
                _proc=proc,
            )
            server.known_hosts_path.write_text(known_hosts_line(HOST, port, host_public_key))
            _running[proc.pid] = server.stop
            return server
        raise ServerUnavailable(last_error)
    except BaseException:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise


def _wait_sshd_ready(proc: subprocess.Popen[bytes], port: int, deadline: float, log: Path) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise ServerUnavailable(f"sshd exited with {proc.returncode}:\n{_log_tail(log)}")
        # Reading the banner proves the listener forks connection handlers, not just listens.
        try:
            with socket.create_connection((HOST, port), timeout=1.0) as s:
                s.settimeout(2.0)
                if s.recv(64).startswith(b"SSH-"):
                    break
        except OSError:
            pass
        time.sleep(0.02)
    else:
        raise ServerUnavailable(
            f"sshd not ready on port {port} after {deadline}s:\n{_log_tail(log)}"
        )
    # Let the probe's handler exit, so connection_count() starts at zero.
    end = time.monotonic() + deadline
    while child_pids(proc.pid) and time.monotonic() < end:
        time.sleep(0.01)


# ---------------------------------------------------------------------------------------------
# Prometheus


@dataclass(frozen=True)
class Series:
    """One backfilled time series: sample name, labels, (unix seconds, value) rising in time.

    ``kind`` is the OpenMetrics type of the family (gauge, counter, histogram, summary,
    unknown). The family name is derived: counters drop ``_total``, histograms drop
    ``_bucket``/``_count``/``_sum`` (pass ``family`` to override).
    """

    name: str
    labels: Mapping[str, str]
    points: Sequence[tuple[float, float]]
    kind: str = "gauge"
    family: str | None = None

    def family_name(self) -> str:
        if self.family:
            return self.family
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum", "_created")}
        suffixes["summary"] = ("_count", "_sum", "_created")
        for suffix in suffixes.get(self.kind, ()):
            if self.name.endswith(suffix):
                return self.name[: -len(suffix)]
        return self.name


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _format_time(t: float) -> str:
    return str(int(t)) if float(t).is_integer() else f"{t:.3f}"


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}"


def openmetrics_text(series: Iterable[Series]) -> str:
    """OpenMetrics text for promtool: one ``# TYPE`` per family, series grouped, ``# EOF``."""
    families: dict[str, list[Series]] = {}
    for s in series:
        families.setdefault(s.family_name(), []).append(s)
    out: list[str] = []
    for family, members in families.items():
        kinds = {m.kind for m in members}
        if len(kinds) != 1:
            raise ValueError(f"family {family!r} has several kinds: {sorted(kinds)}")
        out.append(f"# TYPE {family} {kinds.pop()}")
        for m in members:
            times = [t for t, _ in m.points]
            if times != sorted(times) or len(set(times)) != len(times):
                raise ValueError(f"{m.name}{_labels(m.labels)}: timestamps must rise")
            out.extend(
                f"{m.name}{_labels(m.labels)} {_format_value(v)} {_format_time(t)}"
                for t, v in m.points
            )
    out.append("# EOF")
    return "\n".join(out) + "\n"


def backfill(data_dir: Path, series: Iterable[Series]) -> None:
    """Write series into a TSDB directory with ``promtool tsdb create-blocks-from openmetrics``."""
    promtool = find_binary(PROMTOOL)
    data_dir.mkdir(parents=True, exist_ok=True)
    source = data_dir.parent / f"{data_dir.name}.om"
    source.write_text(openmetrics_text(series))
    result = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data_dir)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise ServerUnavailable(
            f"promtool backfill failed: {result.stderr.strip() or result.stdout}"
        )


@dataclass
class PrometheusServer:
    """A running Prometheus at ``url`` (``http://127.0.0.1:PORT``)."""

    url: str
    pid: int
    port: int
    data_dir: Path
    log_path: Path
    tmpdir: Path
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    def query(
        self, promql: str, at: float | None = None, timeout: float = 5.0
    ) -> list[dict[str, Any]]:
        """Instant query via /api/v1/query; the ``result`` list (raises on an API error)."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        if body.get("status") != "success":
            raise RuntimeError(f"query {promql!r} failed: {body.get('error')}")
        return list(body["data"]["result"])

    def wait_for_series(
        self,
        promql: str,
        deadline: float = 20.0,
        *,
        value: float | None = None,
        at: float | None = None,
    ) -> list[dict[str, Any]]:
        """Poll until the query returns data (optionally a sample equal to ``value``).

        Blocking; from async code use ``await asyncio.to_thread(prom.wait_for_series, q)``.
        A freshly started Prometheus scrapes for the first time ~6 s after start.
        """
        end = time.monotonic() + deadline
        result: list[dict[str, Any]] = []
        while True:
            result = self.query(promql, at=at)
            if result and (value is None or any(_sample_value(r) == value for r in result)):
                return result
            if time.monotonic() >= end:
                raise TimeoutError(f"no data for {promql!r} after {deadline}s (last: {result})")
            time.sleep(0.2)

    def stop(self, deadline: float = 10.0) -> None:
        """Stop Prometheus by pid (SIGTERM, then SIGKILL); remove its temp directory."""
        _running.pop(self.pid, None)
        if self._proc is not None and self._proc.returncode is None:
            _terminate(self._proc, (), deadline)
        shutil.rmtree(self.tmpdir, ignore_errors=True)


def _sample_value(result: Mapping[str, Any]) -> float:
    return float(result["value"][1]) if "value" in result else float("nan")


def start_prometheus(
    *,
    series: Iterable[Series] = (),
    scrape_targets: Sequence[str] = (),
    scrape_interval: str = "1s",
    deadline: float = 20.0,
    attempts: int = 3,
) -> PrometheusServer:
    """Start Prometheus on 127.0.0.1:<free port>; return once ``/-/ready`` answers 200.

    ``series`` are backfilled with promtool before start (queryable at once, at their
    explicit times); ``scrape_targets`` (``host:port``) are scraped every ``scrape_interval``.
    """
    prometheus = find_binary(PROMETHEUS)
    tmpdir = Path(tempfile.mkdtemp(prefix="sluice-prometheus-"))
    try:
        data_dir = tmpdir / "data"
        series = list(series)
        if series:
            backfill(data_dir, series)
        config = tmpdir / "prometheus.yml"  # JSON is YAML: no yaml dependency
        scrape = [
            {
                "job_name": "sluice-test",
                "scrape_interval": scrape_interval,
                "scrape_timeout": scrape_interval,
                "static_configs": [{"targets": list(scrape_targets)}],
            }
        ]
        config.write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": scrape_interval, "evaluation_interval": "1s"},
                    "scrape_configs": scrape if scrape_targets else [],
                },
                indent=2,
            )
        )
        log_path = tmpdir / "prometheus.log"
        last_error = ""
        for _ in range(attempts):
            port = free_port()
            argv = [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={data_dir}",
                f"--web.listen-address={HOST}:{port}",
                "--storage.tsdb.retention.time=100y",
                "--log.level=warn",
            ]
            proc = _spawn(argv, log_path)
            url = f"http://{HOST}:{port}"
            try:
                _wait_prometheus_ready(proc, url, deadline, log_path)
            except ServerUnavailable as exc:
                last_error = str(exc)
                if proc.returncode is None:
                    _terminate(proc)
                if "address already in use" in last_error:
                    continue
                raise
            server = PrometheusServer(url, proc.pid, port, data_dir, log_path, tmpdir, proc)
            _running[proc.pid] = server.stop
            return server
        raise ServerUnavailable(last_error)
    except BaseException:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise


def _wait_prometheus_ready(
    proc: subprocess.Popen[bytes], url: str, deadline: float, log: Path
) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise ServerUnavailable(f"prometheus exited with {proc.returncode}:\n{_log_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1.0) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.02)
    raise ServerUnavailable(f"prometheus not ready at {url} after {deadline}s:\n{_log_tail(log)}")


class MetricsExporter:
    """A Prometheus exporter (text format) whose gauge values the test sets.

    aiohttp serves ``/metrics`` from a background thread with its own event loop, so it keeps
    answering while the test's own loop is busy or blocked::

        exporter = MetricsExporter().start()
        exporter.set("pg_p99_seconds", {"env": "eph-101"}, 0.1)
    """

    def __init__(self) -> None:
        self.host = HOST
        self.port = 0
        self._values: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: Any = None
        self._stopped: Any = None

    @property
    def target(self) -> str:
        """``host:port``, as a Prometheus static target."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.target}/metrics"

    def set(self, name: str, labels: Mapping[str, str], value: float) -> None:
        """Set a gauge sample (created if new)."""
        key = tuple(sorted((str(k), str(v)) for k, v in labels.items()))
        with self._lock:
            self._values.setdefault(name, {})[key] = float(value)

    def remove(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        """Stop exposing one sample (or every sample of ``name`` when labels is None)."""
        with self._lock:
            if labels is None:
                self._values.pop(name, None)
            else:
                key = tuple(sorted((str(k), str(v)) for k, v in labels.items()))
                self._values.get(name, {}).pop(key, None)

    def render(self) -> str:
        """The exposition text served at /metrics."""
        with self._lock:
            snapshot = {name: dict(samples) for name, samples in self._values.items()}
        lines = []
        for name, samples in sorted(snapshot.items()):
            lines.append(f"# TYPE {name} gauge")
            lines.extend(f"{name}{_labels(dict(k))} {_format_value(v)}" for k, v in samples.items())
        return "\n".join(lines) + "\n"

    def start(self, deadline: float = 10.0) -> MetricsExporter:
        """Serve on 127.0.0.1:<free port> from a daemon thread; return once listening."""
        ready = threading.Event()
        errors: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._serve, args=(ready, errors), name="metrics-exporter", daemon=True
        )
        self._thread.start()
        if not ready.wait(deadline) or errors:
            raise ServerUnavailable(f"metrics exporter did not start: {errors}")
        return self

    def _serve(self, ready: threading.Event, errors: list[BaseException]) -> None:
        import asyncio

        from aiohttp import web

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(text=self.render(), content_type="text/plain", charset="utf-8")

        async def main() -> None:
            app = web.Application()
            app.router.add_get("/metrics", metrics)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, HOST, 0)
            await site.start()
            self.port = int(runner.addresses[0][1])
            self._loop = asyncio.get_running_loop()
            self._stopped = asyncio.Event()
            ready.set()
            try:
                await self._stopped.wait()
            finally:
                await runner.cleanup()

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to start()
            errors.append(exc)
            ready.set()

    def stop(self, deadline: float = 5.0) -> None:
        """Stop serving and join the thread."""
        if self._loop is not None and self._stopped is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(deadline)
