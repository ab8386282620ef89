"""The ssh executor's connections: one per distinct (host, port, user, jump), verified, pooled.

Host keys are always verified against ``known_hosts``; a jump host is a pooled connection too,
tunnelled through. Concurrent first uses of an endpoint share one in-flight connect, and each
connection allows at most ``max_sessions`` sessions at once (sshd's ``MaxSessions``).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from sluice.engine.executors.ssh_reasons import Endpoint, connect_failure, trust_hint
from sluice.engine.model.template import TemplateError

#: Seconds between the attempts to open a session sshd refused (nothing ran): it frees a closed
#: session's slot a moment after the client has seen it close, so a session opened right after
#: another (a stop, a stream request, the login-shell probe) can be refused at ``MaxSessions``.
REFUSED_RETRIES = (0.05, 0.1, 0.2, 0.4)
#: Login shells that run sluice's POSIX scripts as they are (by the basename of ``$SHELL``).
POSIX_SHELLS = frozenset({"sh", "dash", "bash", "ash", "ksh", "ksh93", "mksh", "yash"})
#: How long closing connections may take at the end of a rollout.
CLOSE_SECONDS = 3.0
#: Short control sessions (a stop, a request to stream an apply live) at once on a connection,
#: besides ``max_sessions``: a stop must not wait for an apply to end to get a session. sshd's
#: default ``MaxSessions`` (10) leaves room for them above the default ``max_sessions`` (8); a
#: server that refuses one gets it from the applies' sessions instead.
CONTROL_SESSIONS = 2
#: asyncssh's defaults with AES-GCM first: as strong as ChaCha20-Poly1305, and it runs on AES-NI
#: through OpenSSL, where asyncssh's ChaCha20 sets up a cipher per packet (half the client CPU).
CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
)
_JUMP = re.compile(
    r"(?:(?P<user>[^@]+)@)?(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:@\[\]]+))(?::(?P<port>\d+))?"
)


class SshFailure(Exception):
    """A connection problem, already phrased as the target's one-line reason."""


class Stale(Exception):
    """The pooled connection closed before a session could open on it."""


@dataclass
class Connection:
    conn: asyncssh.SSHClientConnection
    sessions: asyncio.Semaphore
    #: The control sessions' (:data:`CONTROL_SESSIONS`).
    control: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(CONTROL_SESSIONS))
    #: The login shell (``$SHELL``) is a POSIX ``sh`` (:data:`POSIX_SHELLS`): it can run sluice's
    #: scripts itself, without an ``sh`` of their own. False until the probe says so.
    posix_login: bool = False
    #: The probe of the login shell, asked in a control session as the connection opens. Not
    #: waited for: what launches before its answer gets an ``sh`` of its own, right on any
    #: host (a first session costs sshd ~50 ms; waited for, it held up every first apply).
    probing: asyncio.Future[None] | None = None


@dataclass
class PoolSettings:
    known_hosts: Path
    key_path: Path | None
    connect_timeout: float
    keepalive: float
    max_sessions: int
    #: Ask each new connection whether its login shell is POSIX (``Connection.posix_login``).
    probe_shell: bool = False


class SshPool:
    """The pooled, verified connections of one executor."""

    def __init__(self, settings: PoolSettings):
        self.settings = settings
        self.connections: dict[Endpoint, asyncio.Future[Connection]] = {}
        self._keys: Sequence[asyncssh.SSHKeyPair] | None = None

    async def connection(self, endpoint: Endpoint) -> Connection:
        """The pooled connection to ``endpoint``; concurrent callers share one connect."""
        future = self.connections.get(endpoint)
        if future is not None and future.done() and not succeeded(future):
            future = None  # failed, cancelled or since lost: connect again
        if future is None:
            future = asyncio.ensure_future(self._connect(endpoint))
            future.add_done_callback(retrieve)  # its waiters may all have been cancelled
            self.connections[endpoint] = future
        # Shielded: one waiter's abort must not cancel the connect others are waiting for.
        return await asyncio.shield(future)

    async def run(self, endpoint: Endpoint, command: str) -> asyncssh.SSHCompletedProcess:
        """A short command on the pooled connection to ``endpoint``."""
        connection = await self.connection(endpoint)
        async with connection.sessions:
            if connection.conn.is_closed():
                raise Stale
            return await _run_retrying(connection.conn, command)

    async def control(self, endpoint: Endpoint, command: str) -> asyncssh.SSHCompletedProcess:
        """A short control command (a stop, a stream request): in a session of its own beside
        the applies' (:data:`CONTROL_SESSIONS`), or among theirs if sshd refuses it one."""
        connection = await self.connection(endpoint)
        async with connection.control:
            if connection.conn.is_closed():
                raise Stale
            try:
                return await _run_retrying(connection.conn, command)
            except asyncssh.ChannelOpenError:
                if connection.conn.is_closed():
                    raise
        return await self.run(endpoint, command)

    async def close(self) -> None:
        """Close every pooled connection (and cancel connects still in flight)."""
        futures, self.connections = list(self.connections.values()), {}
        pending = [f for f in futures if not f.done()]
        for future in pending:
            future.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for future in futures:
            if future.done() and not future.cancelled() and future.exception() is None:
                probing = future.result().probing
                if probing is not None:
                    probing.cancel()
        conns = [f.result().conn for f in futures if f.done() and succeeded(f)]
        for conn in conns:
            conn.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_SECONDS):
                await asyncio.gather(*(c.wait_closed() for c in conns), return_exceptions=True)

    async def _connect(self, endpoint: Endpoint) -> Connection:
        s = self.settings
        tunnel: asyncssh.SSHClientConnection | None = None
        if endpoint.jump is not None:
            try:
                tunnel = (await self.connection(endpoint.jump)).conn
            except SshFailure as exc:
                raise SshFailure(f"jump host: {exc}") from None
        if not s.known_hosts.is_file():
            raise SshFailure(
                f"{endpoint.address}: known_hosts file {s.known_hosts} does not exist; "
                + trust_hint(endpoint, s.known_hosts)
            )
        client_keys = self._client_keys()
        try:
            conn = await asyncssh.connect(
                endpoint.host,
                endpoint.port,
                tunnel=tunnel if tunnel is not None else (),
                username=endpoint.user,
                known_hosts=str(s.known_hosts),  # always verified: never None
                client_keys=client_keys,
                connect_timeout=s.connect_timeout,
                keepalive_interval=s.keepalive,
                keepalive_count_max=3,
                encryption_algs=list(CIPHERS),
                config=None,  # the estate is the whole truth: no ~/.ssh/config surprises
            )
        except Exception as exc:
            why = connect_failure(endpoint, exc, s.known_hosts, s.key_path, s.connect_timeout)
            raise SshFailure(why) from None
        connection = Connection(conn, asyncio.Semaphore(s.max_sessions))
        if s.probe_shell:
            connection.probing = asyncio.ensure_future(_probe(connection, s.connect_timeout))
            connection.probing.add_done_callback(retrieve)
        return connection

    def _client_keys(self) -> Sequence[asyncssh.SSHKeyPair]:
        """The configured key (with its certificate, if any); ``()`` means ssh-agent + ~/.ssh."""
        key_path = self.settings.key_path
        if key_path is None:
            return ()
        if self._keys is None:
            try:
                self._keys = asyncssh.load_keypairs([str(key_path)])
            except OSError as exc:
                raise SshFailure(f"cannot read key {key_path}: {exc.strerror}") from None
            except (asyncssh.KeyImportError, ValueError) as exc:
                raise SshFailure(
                    f"cannot use key {key_path}: {exc} (an encrypted key belongs in "
                    "ssh-agent; then leave `key` unset)"
                ) from None
        return self._keys


def parse_jump(text: str, default_user: str) -> Endpoint:
    """``[user@]host[:port]`` (``[v6addr]:port`` too) → the jump host's endpoint."""
    match = _JUMP.fullmatch(text)
    port = int(match.group("port") or 22) if match else 0
    if match is None or not 0 < port < 65536:
        raise TemplateError(f"jump {text!r}: expected [user@]host[:port]")
    host = match.group("v6") or match.group("host")
    return Endpoint(host, port, match.group("user") or default_user)


def local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # e.g. a container's uid with no passwd entry
        raise TemplateError("no `user` is set and the local user name is unknown") from None


def resolve(base: Path, path: str) -> Path:
    """``~`` expanded; a relative path is relative to the estate file."""
    return base / Path(path).expanduser()


def succeeded(future: asyncio.Future[Connection]) -> bool:
    return (
        not future.cancelled()
        and future.exception() is None
        and not future.result().conn.is_closed()
    )


def retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a future's exception as seen, so asyncio never logs it as unretrieved."""
    if not future.cancelled():
        future.exception()


async def _probe(connection: Connection, timeout: float) -> None:
    """Set ``connection.posix_login`` (:func:`_posix_login`), in a control session."""
    async with connection.control:
        connection.posix_login = await _posix_login(connection.conn, timeout)


async def _posix_login(conn: asyncssh.SSHClientConnection, timeout: float) -> bool:
    """Whether the login shell is one of :data:`POSIX_SHELLS` (asked once per connection; any
    trouble answers no, and scripts get an ``sh`` of their own, as on every host before)."""
    try:
        found = await conn.run('printf "%s\\n" "$SHELL"', check=False, timeout=timeout)
    except (asyncssh.Error, OSError, TimeoutError):
        return False
    shell = str(found.stdout or "").strip()
    return found.exit_status == 0 and shell.rsplit("/", 1)[-1] in POSIX_SHELLS


async def _run_retrying(
    conn: asyncssh.SSHClientConnection, command: str
) -> asyncssh.SSHCompletedProcess:
    """``conn.run``, again (:data:`REFUSED_RETRIES`) while sshd refuses the session."""
    for delay in REFUSED_RETRIES:
        try:
            return await conn.run(command, check=False, timeout=30)
        except asyncssh.ChannelOpenError:
            if conn.is_closed():
                raise
        await asyncio.sleep(delay)
    return await conn.run(command, check=False, timeout=30)
