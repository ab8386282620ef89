"""One command on one SSH channel: open the session, send the variables, stream the output,
and turn the end (an exit status, a signal, a lost connection, a timeout) into an ApplyResult.

A spooled apply's stdout carries both of its streams once it is streamed live (see
:class:`.ssh_spool.Demux`), which a short control session asks for after ``stream_after``
seconds (or at a stop); an apply that ends sooner sends its output at its end, stdout and stderr
on their own streams of the channel.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncssh

from sluice.engine.executors.base import ApplyResult, OutputSink
from sluice.engine.executors.ssh_pool import REFUSED_RETRIES, Connection, Stale, retrieve
from sluice.engine.executors.ssh_reasons import describe_error, one_line
from sluice.engine.executors.ssh_spool import STREAM_AFTER, Demux
from sluice.engine.model.units import format_duration

#: How long a signalled remote command gets to exit before SIGKILL (and then the channel close).
GRACE_SECONDS = 3.0
TAIL_LINES = 3
#: Exit status of the prelude when the variables did not arrive on stdin.
PRELUDE_FAILED = 97

Process = asyncssh.SSHClientProcess[str]


class Lost(Exception):
    """The connection went mid-command; a spooled apply goes on on the host. ``seen``: the
    lines of stdout and stderr received before, for a re-attach to stream the rest."""

    def __init__(self, reason: str, seen: tuple[int, int]):
        super().__init__(reason)
        self.seen = seen


@dataclass
class Command:
    """What to run, and how a stop (timeout, abort) reaches it."""

    text: str
    variables: Mapping[str, str]
    #: The remote spool base of a spooled apply (its stdout is demultiplexed), else None.
    spool: str | None
    timeout: float
    stop: Callable[[Process], Awaitable[None]]
    #: Called once a session is free, right before the command is sent (``Job.launching``).
    launching: Callable[[], None] | None = None
    #: A spooled apply's request to be streamed live (:data:`.ssh_spool.STREAM`, in a control
    #: session), made once ``stream_after`` seconds after the start or at a stop; None: never.
    stream: Callable[[], Awaitable[object]] | None = None
    stream_after: float = STREAM_AFTER


class _StreamRequest:
    """Makes a spooled apply's request to be streamed live, once (``Command.stream``)."""

    def __init__(self, command: Command):
        self.request = command.stream
        self.task: asyncio.Future[object] | None = None
        self.timer = None
        if self.request is not None:
            self.timer = asyncio.get_running_loop().call_later(command.stream_after, self)

    def __call__(self) -> None:
        if self.request is None or self.task is not None:
            return
        self.task = asyncio.ensure_future(self.request())
        self.task.add_done_callback(retrieve)

    def cancel(self) -> None:
        """At the end: the request is moot (a ``tail`` it started ends with the command)."""
        if self.timer is not None:
            self.timer.cancel()
        if self.task is not None:
            self.task.cancel()


async def run_command(
    connection: Connection, where: str, command: Command, output: OutputSink, max_sessions: int
) -> ApplyResult:
    """Run ``command`` in a session of ``connection``; raises :class:`Stale` if nothing ran,
    :class:`Lost` if a spooled apply lost its connection (it goes on on the host)."""
    async with connection.sessions:
        if connection.conn.is_closed():  # died while we queued: nothing ran yet
            raise Stale
        if command.launching is not None:
            command.launching()
        process = await _open(connection, where, command.text, max_sessions)
        if isinstance(process, ApplyResult):
            return process
        # A quick command may have exited (channel closed) before we get here; then the
        # variables are not needed, or the prelude says they did not arrive. A spooled apply
        # reads nothing else (the command's stdin is /dev/null): with no variables, there is
        # nothing to send, not even the end of its stdin (one packet fewer each way).
        if command.variables or command.spool is None:
            with contextlib.suppress(OSError, asyncssh.Error):
                process.stdin.write("".join(f"{value}\n" for value in command.variables.values()))
                process.stdin.write_eof()
        return await _stream(process, where, command, output)


async def _open(
    connection: Connection, where: str, text: str, max_sessions: int
) -> Process | ApplyResult:
    for delay in (*REFUSED_RETRIES, None):
        opening = asyncio.ensure_future(
            connection.conn.create_process(text, encoding="utf-8", errors="replace")
        )
        try:
            return await asyncio.shield(opening)
        except asyncio.CancelledError:
            await _stop_opening(opening)
            raise
        except asyncssh.ChannelOpenError as exc:  # refused: nothing ran, so it may be tried again
            if connection.conn.is_closed():
                return ApplyResult(False, one_line(f"{where}: {describe_error(exc)}"))
            if delay is None:
                return ApplyResult(
                    False,
                    one_line(
                        f"{where}: sshd refused a session ({exc.reason}); is max_sessions "
                        f"({max_sessions}) above the server's MaxSessions?"
                    ),
                )
            await asyncio.sleep(delay)
        except (asyncssh.Error, OSError) as exc:
            # Not retried: the command may have started before the connection went.
            return ApplyResult(False, one_line(f"{where}: {describe_error(exc)}"))
    raise AssertionError("unreachable")


async def _stream(
    process: Process, where: str, command: Command, output: OutputSink
) -> ApplyResult:
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    seen = {"stdout": 0, "stderr": 0}

    def emit(stream: str, line: str) -> None:
        if line.strip():
            tail.append(line)
        seen[stream] = seen.get(stream, 0) + 1
        output(stream, line)

    demux = Demux(command.spool, emit) if command.spool is not None else None
    readers = asyncio.gather(
        _pump(process.stdout, demux or (lambda line: emit("stdout", line))),
        _pump(process.stderr, lambda line: emit("stderr", line)),
    )
    readers.add_done_callback(retrieve)
    live = _StreamRequest(command)
    try:
        async with asyncio.timeout(command.timeout):  # real seconds: a real command takes real time
            await asyncio.shield(readers)  # an abort must not stop them: a stop streams on
            completed = await process.wait()
    except TimeoutError:
        live()  # a stopping command is streamed to its end
        await command.stop(process)
        await _drain(readers)
        return ApplyResult(False, f"timed out after {format_duration(command.timeout)} on {where}")
    except asyncio.CancelledError:
        live()
        await command.stop(process)
        await _drain(readers)
        raise
    except (asyncssh.Error, OSError) as exc:
        process.close()
        last = f"; last output: {' | '.join(tail)}" if tail else ""
        reason = f"{where}: connection lost mid-command ({describe_error(exc)}){last}"
        if command.spool is not None:
            if demux is not None:
                demux.close()  # a blank line it held back is a line received
            raise Lost(reason, (seen["stdout"], seen["stderr"])) from None
        return ApplyResult(False, one_line(reason))
    except Exception:  # e.g. a failing output sink: stop the command, then report
        await terminate(process)
        raise
    finally:
        live.cancel()
        readers.cancel()
        if demux is not None:
            demux.close()
    return _result(completed, tail)


async def _drain(readers: asyncio.Future[Any]) -> None:
    """What the stopped command printed up to its channel's close (bounded)."""
    with contextlib.suppress(TimeoutError, OSError, asyncssh.Error):
        async with asyncio.timeout(GRACE_SECONDS):
            await asyncio.shield(readers)


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


async def _pump(stream: asyncssh.SSHReader[str], line_out: Callable[[str], None]) -> None:
    # Not ``async for``: asyncssh's iterator can yield a spurious "" at EOF.
    while raw := await stream.readline():
        line_out(raw.rstrip("\r\n"))


async def _stop_opening(opening: asyncio.Future[Process]) -> None:
    """Stop a command whose session was still opening when the apply was cancelled.

    sshd starts the command before its reply to the exec request reaches us, so the command
    may already be running: wait (bounded) for the session, then terminate it like any other.
    """
    try:
        async with asyncio.timeout(GRACE_SECONDS):
            process = await asyncio.shield(opening)
    except (TimeoutError, OSError, asyncssh.Error):
        opening.cancel()
        opening.add_done_callback(retrieve)
        return
    await terminate(process)


async def terminate(process: Process) -> None:
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
