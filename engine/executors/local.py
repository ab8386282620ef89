"""The local executor: a command on this machine, through ``/bin/sh -c``, in its own process group.

Every template value is shell-quoted; ``{env.X}`` secrets reach the process through its
environment, never its command line. Abort and timeout terminate the whole process group (so a
``tofu`` and its providers go too): SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

from sluice.engine.executors.base import ApplyResult, Job, OutputSink
from sluice.engine.executors.orphans import (
    MARKER,
    find_running,
    marker_value,
    still_running,
    wait_out,
)
from sluice.engine.model.template import TemplateError, render
from sluice.engine.model.units import format_duration

if TYPE_CHECKING:
    from sluice.engine.model.estate import Estate, ExecutorSpec
    from sluice.engine.support.clock import Clock
    from sluice.engine.support.resources import Resources

#: How long a terminated process group gets before SIGKILL.
GRACE_SECONDS = 3.0
TAIL_LINES = 3
#: How often a wait for an orphaned apply looks again.
ORPHAN_POLL_SECONDS = 0.2


class LocalExecutor:
    def __init__(self, spec: ExecutorSpec, estate: Estate, clock: Clock, resources: Resources):
        self.spec = spec
        self.clock = clock
        self.timeout = float(spec.settings.get("timeout") or 900.0)
        workdir = spec.settings.get("workdir")
        base = estate.path.parent
        self.workdir = (base / Path(workdir).expanduser()) if workdir else base
        self.estate_name = estate.name
        self._orphans: asyncio.Future[dict[str, list[int]]] | None = None

    def _template(self, job: Job) -> str:
        if job.action == "rollback" and self.spec.settings.get("rollback"):
            return str(self.spec.settings["rollback"])
        return str(self.spec.settings["apply"])

    def describe(self, job: Job) -> str:
        try:
            return render(self._template(job), job.context, shell=True).display
        except TemplateError as exc:
            return f"<{exc}>"

    async def apply(self, job: Job, output: OutputSink) -> ApplyResult:
        try:
            command = render(self._template(job), job.context, shell=True)
            env = dict(os.environ)
            env.update(command.env)
            for name, template in (self.spec.settings.get("env") or {}).items():
                rendered = render(template, job.context)
                env[name] = rendered.text
        except TemplateError as exc:
            return ApplyResult(False, str(exc))
        env[MARKER] = marker_value(self.estate_name, job.target)
        refused = await self._wait_for_orphans(job.target, output)
        if refused is not None:
            return refused
        spawn = asyncio.ensure_future(
            asyncio.create_subprocess_exec(
                "/bin/sh",
                "-c",
                command.text,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=self.workdir,
                env=env,
                start_new_session=True,
            )
        )
        try:
            # Shielded: a cancel that lands mid-spawn would otherwise make asyncio kill only the
            # shell and then wait for its children to close the pipes (the whole apply's length).
            process = await asyncio.shield(spawn)
        except OSError as exc:
            return ApplyResult(False, f"cannot start /bin/sh in {self.workdir}: {exc.strerror}")
        except asyncio.CancelledError:
            with contextlib.suppress(OSError):
                await _terminate(await spawn)
            raise
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        assert process.stdout is not None and process.stderr is not None
        readers = asyncio.gather(
            _pump(process.stdout, "stdout", output, tail),
            _pump(process.stderr, "stderr", output, tail),
        )
        try:
            # Real seconds: a real command takes real time whatever ``--time-scale`` says.
            async with asyncio.timeout(self.timeout):
                await readers
                code = await process.wait()
        except TimeoutError:
            await _terminate(process)
            return ApplyResult(False, f"timed out after {format_duration(self.timeout)}")
        except asyncio.CancelledError:
            await _terminate(process)
            raise
        finally:
            readers.cancel()
        if code == 0:
            return ApplyResult(True, "", 0)
        detail = " | ".join(tail) if tail else "no output"
        what = f"killed by signal {-code}" if code < 0 else f"exit {code}"
        return ApplyResult(False, f"{what}: {detail}", code)

    async def _wait_for_orphans(self, target: str, output: OutputSink) -> ApplyResult | None:
        """Wait out an apply of ``target`` that a stopped sluice left running (see orphans)."""
        if self._orphans is None:  # once per rollout, before its first local apply starts
            self._orphans = asyncio.ensure_future(asyncio.to_thread(find_running, self.estate_name))
        pids = (await asyncio.shield(self._orphans)).pop(target, [])
        if not pids:
            return None

        async def look() -> list[int]:
            nonlocal pids
            pids = still_running(pids, self.estate_name, target)
            return pids

        return await wait_out(look, target, output, self.timeout, ORPHAN_POLL_SECONDS)

    async def close(self) -> None:
        return None


async def _pump(
    stream: asyncio.StreamReader, name: str, output: OutputSink, tail: deque[str]
) -> None:
    while True:
        try:
            raw = await stream.readline()
        except ValueError:  # a line longer than the stream limit: take what there is
            raw = await stream.read(65536)
        if not raw:
            return
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if line.strip():
            tail.append(line)
        output(name, line)


async def _terminate(process: asyncio.subprocess.Process) -> None:
    """SIGTERM the process group, SIGKILL it after the grace period; reap the shell."""
    if process.returncode is not None:
        _kill_group(process.pid, signal.SIGKILL)  # stragglers of an exited shell
        return
    _kill_group(process.pid, signal.SIGTERM)
    try:
        async with asyncio.timeout(GRACE_SECONDS):
            await process.wait()
    except TimeoutError:
        pass
    _kill_group(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        await process.wait()


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
