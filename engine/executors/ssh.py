"""The SSH executor: each target's apply (or rollback) runs over SSH with asyncssh.

Host keys are always verified against ``known_hosts``: an unknown or changed key fails the target
with a message naming ``host:port`` and the command that would trust it; nothing is accepted
silently. One connection per distinct (host, port, user, jump) serves every target and command
that goes there, with at most ``max_sessions`` sessions open on it at once (sshd's
``MaxSessions`` defaults to 10); concurrent first uses share one in-flight connect. A jump host is
a pooled connection too, verified against the same ``known_hosts``, and tunnelled through.

Variables (``{env.X}`` secrets and the ``env`` table) travel on the command's stdin, one line
each, read by a short ``IFS= read -r`` prelude. Not on the remote command line, where ``ps`` and
sshd's logs would show them; not as SSH ``env`` requests, which sshd drops without an error unless
its ``AcceptEnv`` lists the name (the command would then run with an empty secret).

Abort and timeout send SIGTERM to the remote command's process group (the SSH ``signal``
request, which sshd turns into ``killpg``), SIGKILL after a grace period, then close the channel.
Every failure is a failed target with a one-line reason; only ``CancelledError`` propagates.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import re
import shlex
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncssh

from sluice.engine.executors.base import ApplyResult, Job, OutputSink
from sluice.engine.executors.orphans import MARKER, marker_value, wait_out
from sluice.engine.executors.ssh_reasons import (
    Endpoint,
    connect_failure,
    describe_error,
    one_line,
    trust_hint,
)
from sluice.engine.executors.ssh_spool import (
    ATTACH,
    LOOK,
    NO_STATUS,
    NO_STATUS_EXIT,
    STOP,
    LocalCopy,
    remote_base,
    script,
    spooled,
)
from sluice.engine.model.template import Context, TemplateError, render
from sluice.engine.model.units import format_duration

if TYPE_CHECKING:
    from sluice.engine.model.estate import Estate, ExecutorSpec
    from sluice.engine.support.clock import Clock
    from sluice.engine.support.resources import Resources

#: How long a signalled remote command gets to exit before SIGKILL (and then the channel close).
GRACE_SECONDS = 3.0
TAIL_LINES = 3
#: Lists the pids whose environment holds the line given as $1 (itself excluded): a remote
#: apply a stopped sluice left running. POSIX sh, tr and grep; /proc as on Linux hosts.
_ORPHAN_PROBE = (
    'for f in /proc/[0-9]*/environ; do p=${f#/proc/}; p=${p%/environ}; [ "$p" = $$ ] && continue; '
    'tr "\\000" "\\n" 2>/dev/null < "$f" | grep -qxF -e "$1" && echo "$p"; done; exit 0'
)
#: How often a wait for a remote orphaned apply looks again.
ORPHAN_POLL_SECONDS = 1.0
#: Exit status of the prelude when the variables did not arrive on stdin.
PRELUDE_FAILED = 97
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
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_JUMP = re.compile(
    r"(?:(?P<user>[^@]+)@)?(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:@\[\]]+))(?::(?P<port>\d+))?"
)


class SshFailure(Exception):
    """A connection problem, already phrased as the target's one-line reason."""


class _Stale(Exception):
    """The pooled connection closed before a session could open on it."""


class _Lost(Exception):
    """The connection went mid-command; a spooled apply goes on on the host."""


@dataclass
class _Connection:
    conn: asyncssh.SSHClientConnection
    sessions: asyncio.Semaphore


class SshExecutor:
    """Runs ``apply``/``rollback`` templates on ``host`` over pooled, verified SSH connections."""

    #: Applies are spooled on the host and adoptable (see executors.ssh_spool), unless the
    #: executor sets ``spool = false`` (then a lost connection or a killed sluice ends them).
    spools = True

    def __init__(self, spec: ExecutorSpec, estate: Estate, clock: Clock, resources: Resources):
        settings = spec.settings
        self.spec = spec
        self.clock = clock
        base = estate.path.parent
        self.port = int(settings.get("port") or 22)
        self.key_path = _resolve(base, settings["key"]) if settings.get("key") else None
        self.known_hosts = _resolve(base, settings.get("known_hosts") or "~/.ssh/known_hosts")
        self.connect_timeout = float(settings.get("connect_timeout") or 10.0)
        keepalive = settings.get("keepalive")
        self.keepalive = 15.0 if keepalive is None else float(keepalive)
        self.max_sessions = int(settings.get("max_sessions") or 8)
        self.timeout = float(settings.get("timeout") or 900.0)
        self.estate_name = estate.name
        self.spool_dir = str(settings.get("spool_dir") or "~/.sluice/applies")
        self.spools = settings.get("spool") is not False
        self.stop_signal = str(settings.get("stop_signal") or "SIGTERM").removeprefix("SIG")
        grace = settings.get("stop_grace")
        self.stop_grace = 30.0 if grace is None else float(grace)
        self._pool: dict[Endpoint, asyncio.Future[_Connection]] = {}
        self._keys: Sequence[asyncssh.SSHKeyPair] | None = None

    # ------------------------------------------------------------------ the protocol

    def describe(self, job: Job) -> str:
        try:
            endpoint = self._endpoint(job.context, display=True)
            command = render(self._template(job), job.context, shell=True).display
        except TemplateError as exc:
            return f"<{exc}>"
        return f"ssh {endpoint}: {command}"

    async def apply(self, job: Job, output: OutputSink) -> ApplyResult:
        try:
            endpoint = self._endpoint(job.context)
            command, variables = self._command(job)
        except TemplateError as exc:
            return ApplyResult(False, one_line(str(exc)))
        base = remote_base(self.spool_dir, self.estate_name, job.spool) if job.spool else None
        copy = LocalCopy(job.spool, output) if job.spool else None
        try:
            for _ in range(2):  # a connection that died idle is replaced once, transparently
                connection = await self._connection(endpoint)
                with contextlib.suppress(_Stale):
                    if job.after_unknown:
                        refused = await self._wait_for_orphans(connection, endpoint, job, output)
                        if refused is not None:
                            return refused
                    try:
                        return await self._run(
                            connection, endpoint, command, variables, copy or output, base
                        )
                    except _Lost as lost:  # spooled: the apply goes on; re-attach to it
                        (copy or output)("stderr", f"sluice: {lost}; re-attaching")
                        adopted = await self._attach(job, copy or output)
                        if adopted is None:
                            return ApplyResult(False, one_line(f"{lost}; it left no status"))
                        return adopted
            return ApplyResult(False, f"{endpoint.address}: the connection keeps closing")
        except SshFailure as exc:
            return ApplyResult(False, one_line(str(exc)))
        except Exception as exc:  # never an exception: an unforeseen one is a failed target too
            return ApplyResult(False, one_line(f"{endpoint.address}: {describe_error(exc)}"))
        finally:
            if copy is not None:
                copy.close()

    async def look(self, job: Job) -> str:
        """``finished``, ``running`` or ``none``: the remote apply in ``job.spool``."""
        if job.spool is None:
            return "none"
        try:
            endpoint = self._endpoint(job.context)
            base = remote_base(self.spool_dir, self.estate_name, job.spool)
            found = await self._exec(endpoint, script(LOOK, base))
        except (TemplateError, SshFailure, _Stale, asyncssh.Error, OSError):
            return "none"  # unreachable: re-applying waits for any orphan, or fails the target
        answer = str(found.stdout or "").strip()
        return answer if answer in ("finished", "running") else "none"

    async def adopt(self, job: Job, output: OutputSink) -> ApplyResult | None:
        """Re-attach to the remote apply in ``job.spool`` (or read its status); its outcome."""
        assert job.spool is not None
        copy = LocalCopy(job.spool, output)
        try:
            return await self._attach(job, copy)
        except SshFailure as exc:
            return ApplyResult(False, one_line(str(exc)))
        finally:
            copy.close()

    async def _attach(self, job: Job, output: OutputSink) -> ApplyResult | None:
        assert job.spool is not None
        endpoint = self._endpoint(job.context)
        base = remote_base(self.spool_dir, self.estate_name, job.spool)
        for _ in range(2):
            connection = await self._connection(endpoint)
            with contextlib.suppress(_Stale):
                try:
                    result = await self._run(
                        connection, endpoint, script(ATTACH, base), {}, output, base
                    )
                except _Lost as lost:
                    return ApplyResult(False, one_line(str(lost)))
                if result.exit_code == NO_STATUS_EXIT and NO_STATUS in result.reason:
                    return None
                return result
        return ApplyResult(False, f"{endpoint.address}: the connection keeps closing")

    async def _exec(self, endpoint: Endpoint, command: str) -> asyncssh.SSHCompletedProcess:
        """A short command on the pooled connection to ``endpoint``."""
        connection = await self._connection(endpoint)
        async with connection.sessions:
            if connection.conn.is_closed():
                raise _Stale
            return await connection.conn.run(command, check=False, timeout=30)

    async def _stop(
        self,
        process: asyncssh.SSHClientProcess[str],
        endpoint: Endpoint,
        base: str | None,
        output: OutputSink,
    ) -> None:
        """Stop a spooled remote apply: ``stop_signal`` to its process group on the host,
        SIGKILL after ``stop_grace`` (at once if the stop is cancelled: a second abort)."""
        if base is None:
            await _terminate(process)
            return
        output(
            "stderr",
            f"sluice: SIG{self.stop_signal} sent to the apply's process group on "
            f"{endpoint.address}; SIGKILL in {format_duration(self.stop_grace)} if it has not ended",
        )
        try:
            with contextlib.suppress(SshFailure, _Stale, asyncssh.Error, OSError):
                await self._exec(endpoint, script(STOP, base, self.stop_signal))
            async with asyncio.timeout(self.stop_grace):
                await process.wait_closed()
            return
        except TimeoutError:
            output("stderr", f"sluice: still running after SIG{self.stop_signal} + grace: SIGKILL")
        except asyncio.CancelledError:
            await self._kill(process, endpoint, base)
            raise
        await self._kill(process, endpoint, base)

    async def _kill(
        self, process: asyncssh.SSHClientProcess[str], endpoint: Endpoint, base: str
    ) -> None:
        with contextlib.suppress(SshFailure, _Stale, asyncssh.Error, OSError):
            await self._exec(endpoint, script(STOP, base, "KILL"))
        await _terminate(process)  # and the channel (a host without setsid ran it attached)

    async def close(self) -> None:
        """Close every pooled connection (and cancel connects still in flight)."""
        futures, self._pool = list(self._pool.values()), {}
        pending = [f for f in futures if not f.done()]
        for future in pending:
            future.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        conns = [f.result().conn for f in futures if f.done() and _succeeded(f)]
        for conn in conns:
            conn.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(GRACE_SECONDS):
                await asyncio.gather(*(c.wait_closed() for c in conns), return_exceptions=True)

    # ------------------------------------------------------------------ rendering

    def _template(self, job: Job) -> str:
        if job.action == "rollback" and self.spec.settings.get("rollback"):
            return str(self.spec.settings["rollback"])
        return str(self.spec.settings["apply"])

    def _endpoint(self, ctx: Context, *, display: bool = False) -> Endpoint:
        def text(key: str) -> str:
            rendered = render(str(self.spec.settings[key]), ctx)
            return (rendered.display if display else rendered.text).strip()

        host = text("host")
        if not host:
            raise TemplateError(f"host renders empty for target {ctx.target!r}")
        user = text("user") if self.spec.settings.get("user") else _local_user()
        jump = _parse_jump(text("jump"), user) if self.spec.settings.get("jump") else None
        return Endpoint(host, self.port, user, jump)

    def _command(self, job: Job) -> tuple[str, dict[str, str]]:
        """The remote command line and the variables its prelude reads from stdin."""
        rendered = render(self._template(job), job.context, shell=True)
        variables = dict(rendered.env)
        env: Mapping[str, Any] = self.spec.settings.get("env") or {}
        for name, template in env.items():
            if not _ENV_NAME.match(name):
                raise TemplateError(f"env.{name}: not a shell variable name")
            variables[name] = render(str(template), job.context).text
        for name, value in variables.items():
            if "\n" in value:
                raise TemplateError(
                    f"{name} holds a newline; the ssh executor sends each variable as one line"
                )
        # The marker names this target's apply in the environment of everything it runs, for a
        # later resume to find it if a stopped sluice leaves it running (_wait_for_orphans). The
        # script runs in an `sh` the login shell execs after exporting it, so that `sh` is marked
        # from the start (one program more than the bare command). Not secret: on the command line.
        value = shlex.quote(marker_value(self.estate_name, job.target))
        mark = f"export {MARKER}={value}; exec sh -c"
        reads = " ".join(f"IFS= read -r {n} || exit {PRELUDE_FAILED};" for n in variables)
        prelude = f"{reads} export {' '.join(variables)}\n" if variables else ""
        if job.spool is not None:  # spooled: the command is an argument of the spooling script
            base = remote_base(self.spool_dir, self.estate_name, job.spool)
            args = " ".join(map(shlex.quote, ("sluice", base, rendered.text)))
            return f"{mark} {shlex.quote(spooled(prelude))} {args}", variables
        return f"{mark} {shlex.quote(prelude + rendered.text)}", variables

    # ------------------------------------------------------------------ connections

    async def _connection(self, endpoint: Endpoint) -> _Connection:
        """The pooled connection to ``endpoint``; concurrent callers share one connect."""
        future = self._pool.get(endpoint)
        if future is not None and future.done() and not _succeeded(future):
            future = None  # failed, cancelled or since lost: connect again
        if future is None:
            future = asyncio.ensure_future(self._connect(endpoint))
            future.add_done_callback(_retrieve)  # its waiters may all have been cancelled
            self._pool[endpoint] = future
        # Shielded: one waiter's abort must not cancel the connect others are waiting for.
        return await asyncio.shield(future)

    async def _connect(self, endpoint: Endpoint) -> _Connection:
        tunnel: asyncssh.SSHClientConnection | None = None
        if endpoint.jump is not None:
            try:
                tunnel = (await self._connection(endpoint.jump)).conn
            except SshFailure as exc:
                raise SshFailure(f"jump host: {exc}") from None
        if not self.known_hosts.is_file():
            raise SshFailure(
                f"{endpoint.address}: known_hosts file {self.known_hosts} does not exist; "
                + trust_hint(endpoint, self.known_hosts)
            )
        client_keys = self._client_keys()
        try:
            conn = await asyncssh.connect(
                endpoint.host,
                endpoint.port,
                tunnel=tunnel if tunnel is not None else (),
                username=endpoint.user,
                known_hosts=str(self.known_hosts),  # always verified: never None
                client_keys=client_keys,
                connect_timeout=self.connect_timeout,
                keepalive_interval=self.keepalive,
                keepalive_count_max=3,
                encryption_algs=list(CIPHERS),
                config=None,  # the estate is the whole truth: no ~/.ssh/config surprises
            )
        except Exception as exc:
            why = connect_failure(
                endpoint, exc, self.known_hosts, self.key_path, self.connect_timeout
            )
            raise SshFailure(why) from None
        return _Connection(conn, asyncio.Semaphore(self.max_sessions))

    def _client_keys(self) -> Sequence[asyncssh.SSHKeyPair]:
        """The configured key (with its certificate, if any); ``()`` means ssh-agent + ~/.ssh."""
        if self.key_path is None:
            return ()
        if self._keys is None:
            try:
                self._keys = asyncssh.load_keypairs([str(self.key_path)])
            except OSError as exc:
                raise SshFailure(f"cannot read key {self.key_path}: {exc.strerror}") from None
            except (asyncssh.KeyImportError, ValueError) as exc:
                raise SshFailure(
                    f"cannot use key {self.key_path}: {exc} (an encrypted key belongs in "
                    "ssh-agent; then leave `key` unset)"
                ) from None
        return self._keys

    # ------------------------------------------------------------------ commands

    async def _wait_for_orphans(
        self, connection: _Connection, endpoint: Endpoint, job: Job, output: OutputSink
    ) -> ApplyResult | None:
        """Wait out a remote apply of this target that a stopped sluice left running.

        When sluice dies, sshd closes its sessions but their commands (no terminal, no hangup)
        go on. Before re-applying a target whose last apply has an unknown outcome, look on the
        host for processes carrying its marker, and wait (up to ``timeout``) until none is left.
        """
        marker = f"{MARKER}={marker_value(self.estate_name, job.target)}"
        probe = f"sh -c {shlex.quote(_ORPHAN_PROBE)} sh {shlex.quote(marker)}"

        async def look() -> list[int]:
            async with connection.sessions:
                if connection.conn.is_closed():
                    raise _Stale
                try:
                    found = await connection.conn.run(probe, check=False, timeout=30)
                except (asyncssh.Error, OSError) as exc:
                    raise SshFailure(
                        f"{endpoint.address}: cannot look for an earlier apply still running "
                        f"({describe_error(exc)})"
                    ) from None
            return [int(pid) for pid in str(found.stdout or "").split() if pid.isdigit()]

        what = f"{job.target} on {endpoint.address}"
        return await wait_out(look, what, output, self.timeout, ORPHAN_POLL_SECONDS)

    async def _run(
        self,
        connection: _Connection,
        endpoint: Endpoint,
        command: str,
        variables: Mapping[str, str],
        output: OutputSink,
        base: str | None = None,
    ) -> ApplyResult:
        where = endpoint.address
        async with connection.sessions:
            if connection.conn.is_closed():  # died while we queued: nothing ran yet
                raise _Stale
            opening = asyncio.ensure_future(
                connection.conn.create_process(command, encoding="utf-8", errors="replace")
            )
            try:
                process = await asyncio.shield(opening)
            except asyncio.CancelledError:
                await _stop_opening(opening)
                raise
            except (asyncssh.Error, OSError) as exc:
                # Not retried: the command may have started before the connection went.
                if not isinstance(exc, asyncssh.ChannelOpenError) or connection.conn.is_closed():
                    return ApplyResult(False, one_line(f"{where}: {describe_error(exc)}"))
                return ApplyResult(
                    False,
                    one_line(
                        f"{where}: sshd refused a session ({exc.reason}); is max_sessions "
                        f"({self.max_sessions}) above the server's MaxSessions?"
                    ),
                )
            # A quick command may have exited (channel closed) before we get here; then the
            # variables are not needed, or the prelude says they did not arrive.
            with contextlib.suppress(OSError, asyncssh.Error):
                process.stdin.write("".join(f"{value}\n" for value in variables.values()))
                process.stdin.write_eof()
            tail: deque[str] = deque(maxlen=TAIL_LINES)
            readers = asyncio.gather(
                _pump(process.stdout, "stdout", output, tail),
                _pump(process.stderr, "stderr", output, tail),
            )
            readers.add_done_callback(_retrieve)
            limit = self.timeout  # real seconds: a real command takes real time
            try:
                async with asyncio.timeout(limit):
                    await readers
                    completed = await process.wait()
            except TimeoutError:
                await self._stop(process, endpoint, base, output)
                return ApplyResult(
                    False, f"timed out after {format_duration(self.timeout)} on {where}"
                )
            except asyncio.CancelledError:
                await self._stop(process, endpoint, base, output)
                raise
            except (asyncssh.Error, OSError) as exc:
                process.close()
                last = f"; last output: {' | '.join(tail)}" if tail else ""
                reason = f"{where}: connection lost mid-command ({describe_error(exc)}){last}"
                if base is not None:
                    raise _Lost(reason) from None
                return ApplyResult(False, one_line(reason))
            except Exception:  # e.g. a failing output sink: stop the command, then report
                await _terminate(process)
                raise
            finally:
                readers.cancel()
        return _result(completed, tail)


def _result(completed: asyncssh.SSHCompletedProcess, tail: deque[str]) -> ApplyResult:
    code = completed.exit_status
    if code == 0:
        return ApplyResult(True, "", 0)
    detail = " | ".join(tail) if tail else "no output"
    if completed.exit_signal:
        what = f"killed by signal {completed.exit_signal[0]}"
    elif code is None or code < 0:
        what = "the connection closed without an exit status"
    elif code == PRELUDE_FAILED and not tail:
        what = f"exit {code} (the variables did not arrive on stdin)"
    else:
        what = f"exit {code}"
    return ApplyResult(False, one_line(f"{what}: {detail}"), code)


async def _pump(
    stream: asyncssh.SSHReader[str], name: str, output: OutputSink, tail: deque[str]
) -> None:
    # Not ``async for``: asyncssh's iterator can yield a spurious "" at EOF.
    while raw := await stream.readline():
        line = raw.rstrip("\r\n")
        if line.strip():
            tail.append(line)
        output(name, line)


async def _stop_opening(opening: asyncio.Future[asyncssh.SSHClientProcess[str]]) -> None:
    """Stop a command whose session was still opening when the apply was cancelled.

    sshd starts the command before its reply to the exec request reaches us, so the command
    may already be running: wait (bounded) for the session, then terminate it like any other.
    """
    try:
        async with asyncio.timeout(GRACE_SECONDS):
            process = await asyncio.shield(opening)
    except (TimeoutError, OSError, asyncssh.Error):
        opening.cancel()
        opening.add_done_callback(_retrieve)
        return
    await _terminate(process)


async def _terminate(process: asyncssh.SSHClientProcess[str]) -> None:
    """SIGTERM the remote process group, SIGKILL after the grace period, close the channel."""
    for signal_name in ("TERM", "KILL"):
        with contextlib.suppress(OSError, ValueError, asyncssh.Error):
            process.send_signal(signal_name)
        try:
            async with asyncio.timeout(GRACE_SECONDS):
                await process.wait_closed()
            break
        except (TimeoutError, OSError, asyncssh.Error):
            continue
    process.close()


def _parse_jump(text: str, default_user: str) -> Endpoint:
    """``[user@]host[:port]`` (``[v6addr]:port`` too) → the jump host's endpoint."""
    match = _JUMP.fullmatch(text)
    port = int(match.group("port") or 22) if match else 0
    if match is None or not 0 < port < 65536:
        raise TemplateError(f"jump {text!r}: expected [user@]host[:port]")
    host = match.group("v6") or match.group("host")
    return Endpoint(host, port, match.group("user") or default_user)


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # e.g. a container's uid with no passwd entry
        raise TemplateError("no `user` is set and the local user name is unknown") from None


def _resolve(base: Path, path: str) -> Path:
    """``~`` expanded; a relative path is relative to the estate file."""
    return base / Path(path).expanduser()


def _succeeded(future: asyncio.Future[_Connection]) -> bool:
    return (
        not future.cancelled()
        and future.exception() is None
        and not future.result().conn.is_closed()
    )


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a future's exception as seen, so asyncio never logs it as unretrieved."""
    if not future.cancelled():
        future.exception()
