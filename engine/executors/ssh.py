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

Applies are spooled on the host (:mod:`.ssh_spool`) unless ``spool = false``. Abort and timeout
send ``stop_signal`` to the spooled command's process group, SIGKILL after ``stop_grace`` (at
once on a second abort); an unspooled command gets the SSH ``signal`` request (sshd's
``killpg``). Connections: :mod:`.ssh_pool`; one command's channel: :mod:`.ssh_channel`.
Every failure is a failed target with a one-line reason; only ``CancelledError`` propagates.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import shlex
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import asyncssh

from sluice.engine.executors.base import ApplyResult, Job, OutputSink
from sluice.engine.executors.orphans import MARKER, marker_value, wait_out
from sluice.engine.executors.ssh_channel import (
    GRACE_SECONDS,
    PRELUDE_FAILED,
    Command,
    Lost,
    Process,
    run_command,
    terminate,
)
from sluice.engine.executors.ssh_pool import (
    CIPHERS,
    PoolSettings,
    SshFailure,
    SshPool,
    Stale,
    local_user,
    parse_jump,
    resolve,
)
from sluice.engine.executors.ssh_reasons import Endpoint, describe_error, one_line
from sluice.engine.executors.ssh_spool import (
    ATTACH,
    LOOK,
    NO_STATUS,
    NO_STATUS_EXIT,
    STOP,
    STREAM,
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

__all__ = ["CIPHERS", "PRELUDE_FAILED", "Endpoint", "SshExecutor", "SshFailure", "parse_jump"]

#: Lists the pids (itself excluded) whose environment holds a line matching $1, or one of whose
#: arguments matches $2 (basic regular expressions, a character of each bracketed so that grep's
#: own arguments never match): a remote apply a stopped sluice left running. What the apply
#: starts carries the marker in its environment; a POSIX login shell that runs a spooled apply's
#: wrapper itself (and its subshells) on its command line. GNU grep (``-z``), /proc as on Linux.
_ORPHAN_PROBE = (
    '{ grep -lsxz -e "$1" /proc/[0-9]*/environ; grep -lsz -e "$2" /proc/[0-9]*/cmdline; } '
    '2>/dev/null | while IFS=/ read -r _ _ p _; do [ "$p" = $$ ] || echo "$p"; done; exit 0'
)
#: How often a wait for a remote orphaned apply looks again.
ORPHAN_POLL_SECONDS = 1.0
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


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
        self.key_path = resolve(base, settings["key"]) if settings.get("key") else None
        self.known_hosts = resolve(base, settings.get("known_hosts") or "~/.ssh/known_hosts")
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
        self._pool = SshPool(
            PoolSettings(
                self.known_hosts,
                self.key_path,
                self.connect_timeout,
                self.keepalive,
                self.max_sessions,
                probe_shell=self.spools,
            )
        )

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
            nonce = secrets.token_hex(6)  # names this launch on the host (ssh_spool.STREAM)
            command, variables = self._command(job, nonce)
        except TemplateError as exc:
            return ApplyResult(False, one_line(str(exc)))
        base = remote_base(self.spool_dir, self.estate_name, job.spool) if job.spool else None
        copy = LocalCopy(job.spool, output) if job.spool else None
        sink = copy or output
        try:
            for _ in range(2):  # a connection that died idle is replaced once, transparently
                with contextlib.suppress(Stale):
                    if job.after_unknown:
                        refused = await self._wait_for_orphans(endpoint, job, output)
                        if refused is not None:
                            return refused
                    try:
                        return await self._run(
                            endpoint, command, variables, sink, base, job, nonce=nonce
                        )
                    except Lost as lost:  # spooled: the apply goes on; re-attach to it
                        sink("stderr", f"sluice: {lost}; re-attaching")
                        adopted = await self._attach(job, sink, lost.seen)
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
            found = await self._pool.run(endpoint, script(LOOK, base))
        except (TemplateError, SshFailure, Stale, asyncssh.Error, OSError):
            return "none"  # unreachable: re-applying waits for any orphan, or fails the target
        answer = str(found.stdout or "").strip()
        return answer if answer in ("finished", "running") else "none"

    async def adopt(self, job: Job, output: OutputSink) -> ApplyResult | None:
        """Re-attach to the remote apply in ``job.spool`` (or read its status); its outcome."""
        assert job.spool is not None
        copy = LocalCopy(job.spool, output)
        try:  # every line the local copy lacks: what printed while no sluice streamed it
            return await self._attach(job, copy, copy.lines())
        except SshFailure as exc:
            return ApplyResult(False, one_line(str(exc)))
        finally:
            copy.close()

    async def _attach(
        self, job: Job, output: OutputSink, seen: tuple[int, int] | None = None
    ) -> ApplyResult | None:
        """Stream the apply in ``job.spool`` to its end; ``seen``: the lines of each stream
        already received (from the start of the apply), else what it prints from now on."""
        assert job.spool is not None
        endpoint = self._endpoint(job.context)
        base = remote_base(self.spool_dir, self.estate_name, job.spool)
        text = script(ATTACH, base, *map(str, seen or ()))
        for _ in range(2):
            with contextlib.suppress(Stale):
                try:
                    result = await self._run(endpoint, text, {}, output, base, job)
                except Lost as lost:
                    return ApplyResult(False, one_line(str(lost)))
                if result.exit_code == NO_STATUS_EXIT and NO_STATUS in result.reason:
                    return None
                return result
        return ApplyResult(False, f"{endpoint.address}: the connection keeps closing")

    async def _stop(
        self,
        process: Process,
        endpoint: Endpoint,
        base: str | None,
        output: OutputSink,
        job: Job | None = None,
    ) -> None:
        """Stop a spooled remote apply: ``stop_signal`` to its process group on the host,
        SIGKILL after ``stop_grace`` (at once if the stop is cancelled: a second abort)."""
        note = job.stopping if job is not None else (lambda _signal, _grace: None)
        if base is None:
            note("SIGTERM", GRACE_SECONDS)
            await terminate(process)
            return
        output(
            "stderr",
            f"sluice: SIG{self.stop_signal} sent to the apply's process group on "
            f"{endpoint.address}; SIGKILL in {format_duration(self.stop_grace)} if it has not ended",
        )
        note(f"SIG{self.stop_signal}", self.stop_grace)
        try:
            with contextlib.suppress(SshFailure, Stale, asyncssh.Error, OSError):
                await self._pool.control(endpoint, script(STOP, base, self.stop_signal))
            async with asyncio.timeout(self.stop_grace):
                await process.wait_closed()
            return
        except TimeoutError:
            output("stderr", f"sluice: still running after SIG{self.stop_signal} + grace: SIGKILL")
        except asyncio.CancelledError:
            note("SIGKILL", 0.0)
            await self._kill(process, endpoint, base)
            raise
        note("SIGKILL", 0.0)
        await self._kill(process, endpoint, base)

    async def _kill(self, process: Process, endpoint: Endpoint, base: str) -> None:
        with contextlib.suppress(SshFailure, Stale, asyncssh.Error, OSError):
            await self._pool.control(endpoint, script(STOP, base, "KILL"))
        await terminate(process)  # and the channel (a host without setsid ran it attached)

    async def close(self) -> None:
        """Close every pooled connection (and cancel connects still in flight)."""
        await self._pool.close()

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
        user = text("user") if self.spec.settings.get("user") else local_user()
        jump = parse_jump(text("jump"), user) if self.spec.settings.get("jump") else None
        return Endpoint(host, self.port, user, jump)

    def _command(self, job: Job, nonce: str) -> tuple[Callable[[bool], str], dict[str, str]]:
        """The remote command line (given whether the login shell is POSIX) and the variables
        its prelude reads from stdin; ``nonce`` names this launch in a spooled apply's files."""
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
        marker = f"export {MARKER}={shlex.quote(marker_value(self.estate_name, job.target))};"
        reads = " ".join(f"IFS= read -r {n} || exit {PRELUDE_FAILED};" for n in variables)
        prelude = f"{reads} export {' '.join(variables)}\n" if variables else ""
        if job.spool is None:
            text = f"{marker} exec sh -c {shlex.quote(prelude + rendered.text)}"
            return lambda _posix: text, variables
        # Spooled: the command is an argument of the spooling script. A POSIX login shell runs
        # the script itself (its `.pid` and status, not its environment, say that it runs; what
        # the command starts is marked): one program fewer on the host for every apply.
        base = remote_base(self.spool_dir, self.estate_name, job.spool)
        args = " ".join(map(shlex.quote, ("sluice", base, rendered.text, nonce)))
        script_text = spooled(prelude)

        def line(posix: bool) -> str:
            if posix:
                return f"{marker} set -- {args.removeprefix('sluice ')}; {script_text}"
            return f"{marker} exec sh -c {shlex.quote(script_text)} {args}"

        return line, variables

    # ------------------------------------------------------------------ commands

    async def _wait_for_orphans(
        self, endpoint: Endpoint, job: Job, output: OutputSink
    ) -> ApplyResult | None:
        """Wait out a remote apply of this target that a stopped sluice left running.

        When sluice dies, sshd closes its sessions but their commands (no terminal, no hangup)
        go on. Before re-applying a target whose last apply has an unknown outcome, look on the
        host for processes carrying its marker, and wait (up to ``timeout``) until none is left.
        """
        value = marker_value(self.estate_name, job.target)
        in_env = f"[{MARKER[0]}]{_bre(MARKER[1:] + '=' + value)}"
        in_args = f"^export [{MARKER[0]}]{_bre(MARKER[1:] + '=' + shlex.quote(value))}; set -- "
        probe = script(_ORPHAN_PROBE, in_env, in_args)

        async def look() -> list[int]:
            try:
                found = await self._pool.run(endpoint, probe)
            except (asyncssh.Error, OSError) as exc:
                raise SshFailure(
                    f"{endpoint.address}: cannot look for an earlier apply still running "
                    f"({describe_error(exc)})"
                ) from None
            return sorted({int(pid) for pid in str(found.stdout or "").split() if pid.isdigit()})

        what = f"{job.target} on {endpoint.address}"
        return await wait_out(look, what, output, self.timeout, ORPHAN_POLL_SECONDS)

    async def _run(
        self,
        endpoint: Endpoint,
        text: str | Callable[[bool], str],
        variables: Mapping[str, str],
        output: OutputSink,
        base: str | None = None,
        job: Job | None = None,
        *,
        nonce: str | None = None,
    ) -> ApplyResult:
        """``text``: the command line, or what makes it given whether the login shell is POSIX;
        ``nonce``: the spooling wrapper's launch, asked to stream live (ssh_spool.STREAM)."""
        connection = await self._pool.connection(endpoint)
        if not isinstance(text, str):
            text = text(connection.posix_login)

        async def stop(process: Process) -> None:
            await self._stop(process, endpoint, base, output, job)

        async def stream() -> None:
            assert base is not None and nonce is not None
            with contextlib.suppress(SshFailure, Stale, asyncssh.Error, OSError):
                await self._pool.control(endpoint, script(STREAM, base, nonce))

        launch = job.launching if job is not None else None
        live = stream if nonce is not None and base is not None else None
        command = Command(text, variables, base, self.timeout, stop, launch, live)
        return await run_command(connection, endpoint.address, command, output, self.max_sessions)


def _bre(text: str) -> str:
    """A basic regular expression that matches ``text`` exactly."""
    return "".join(f"[{c}]" if c in ".[*$\\" else "\\^" if c == "^" else c for c in text)
