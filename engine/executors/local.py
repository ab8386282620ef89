"""The local executor: a command on this machine, through ``/bin/sh -c``, in a session of its own.

Every template value is shell-quoted; ``{env.X}`` secrets reach the process through its
environment, never its command line. The command outlives sluice: its output goes to spool files
and its exit status to a status file (see :mod:`sluice.engine.executors.spool`), so a killed
sluice neither kills it nor loses its outcome — a resume adopts it. Abort and timeout stop the
whole process group (so a ``tofu`` and its providers go too): ``stop_signal`` (SIGTERM), then
SIGKILL after ``stop_grace`` (30 s) — at once if the abort is repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Callable
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
from sluice.engine.executors.spool import (
    Spool,
    SpoolTail,
    follow,
    read_status,
    result_of,
    start_detached,
    stop_group,
    tails,
)
from sluice.engine.model.template import TemplateError, render
from sluice.engine.model.units import format_duration

if TYPE_CHECKING:
    from sluice.engine.model.estate import Estate, ExecutorSpec
    from sluice.engine.support.clock import Clock
    from sluice.engine.support.resources import Resources

#: How long a stopped process group gets before SIGKILL, unless ``stop_grace`` says otherwise.
GRACE_SECONDS = 30.0
#: How often a wait for an orphaned apply looks again.
ORPHAN_POLL_SECONDS = 0.2


class LocalExecutor:
    #: Applies are spooled and adoptable (see executors.spool).
    spools = True

    def __init__(self, spec: ExecutorSpec, estate: Estate, clock: Clock, resources: Resources):
        self.spec = spec
        self.clock = clock
        self.timeout = float(spec.settings.get("timeout") or 900.0)
        workdir = spec.settings.get("workdir")
        base = estate.path.parent
        self.workdir = (base / Path(workdir).expanduser()) if workdir else base
        self.estate_name = estate.name
        self.stop_signal = signal.Signals[str(spec.settings.get("stop_signal") or "SIGTERM")]
        grace = spec.settings.get("stop_grace")
        self.stop_grace = float(GRACE_SECONDS if grace is None else grace)
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
        scratch = None if job.spool else Path(tempfile.mkdtemp(prefix="sluice-spool-"))
        spool = Spool(job.spool or (scratch or Path()) / "apply.1")
        try:
            job.launching()
            try:
                process = await start_detached(command.text, spool, cwd=self.workdir, env=env)
            except OSError as exc:
                return ApplyResult(False, f"cannot start /bin/sh in {self.workdir}: {exc.strerror}")
            return await self._watch(process, spool, output, job)
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)

    async def _watch(
        self, process: asyncio.subprocess.Process, spool: Spool, output: OutputSink, job: Job
    ) -> ApplyResult:
        """Stream ``spool`` until the wrapper ends; stop the group on timeout or cancel."""
        readers, tail = tails(spool, output)
        waiter = asyncio.ensure_future(process.wait())
        try:
            # Real seconds: a real command takes real time whatever ``--time-scale`` says.
            async with asyncio.timeout(self.timeout):
                await follow(readers, waiter.done, waiter)
        except TimeoutError:
            await self._stop_streaming(process, waiter, readers, output, "timed out", job)
            return ApplyResult(False, f"timed out after {format_duration(self.timeout)}")
        except asyncio.CancelledError:
            await self._stop_streaming(process, waiter, readers, output, "aborted", job)
            raise
        code = read_status(spool)
        if code is None:  # the wrapper itself was killed: its exit is all there is
            code = process.returncode if process.returncode is not None else -9
        return result_of(code, spool, list(tail))

    async def _stop_streaming(
        self,
        process: asyncio.subprocess.Process,
        waiter: asyncio.Future[int],
        readers: list[SpoolTail],
        output: OutputSink,
        why: str,
        job: Job,
    ) -> None:
        """:meth:`_stop`, streaming what the stopping command prints meanwhile (its cleanup can
        take the whole grace), then the rest."""
        streaming = asyncio.ensure_future(follow(readers, waiter.done, waiter))
        try:
            await self._stop(process.pid, waiter.done, output, why, job)
        finally:
            streaming.cancel()
            await asyncio.gather(streaming, return_exceptions=True)
            await follow(readers, lambda: True)

    async def _stop(
        self, pgid: int, ended: Callable[[], bool], output: OutputSink, why: str, job: Job
    ) -> None:
        """``stop_signal`` to the group, SIGKILL after ``stop_grace`` — or at once when the
        stop is itself cancelled (a second abort)."""
        name = self.stop_signal.name
        output(
            "stderr",
            f"sluice: {why}: {name} sent to the apply's process group; "
            f"SIGKILL in {format_duration(self.stop_grace)} if it has not ended",
        )
        job.stopping(name, self.stop_grace)
        try:
            graceful = await stop_group(pgid, self.stop_signal, self.stop_grace, ended)
        except asyncio.CancelledError:
            job.stopping("SIGKILL", 0.0)
            await stop_group(pgid, signal.SIGKILL, 0.0, ended)
            output("stderr", "sluice: stopped at once (SIGKILL), as asked")
            await _until(ended, 5.0)
            raise
        if not graceful:
            job.stopping("SIGKILL", 0.0)
            output("stderr", f"sluice: still running after {name} + grace: SIGKILL sent")
        await _until(ended, 5.0)

    async def look(self, job: Job) -> str:
        """Whether the apply in ``job.spool`` finished (status), still runs (marker), or neither."""
        if job.spool is None:
            return "none"
        if read_status(Spool(job.spool)) is not None:
            return "finished"
        return "running" if await self._orphan_pids(job.target) else "none"

    async def adopt(self, job: Job, output: OutputSink) -> ApplyResult | None:
        """Record the real outcome of the apply in ``job.spool``, re-attaching if it runs."""
        assert job.spool is not None
        spool = Spool(job.spool)
        code = read_status(spool)
        if code is None:
            pids = await self._orphan_pids(job.target)
            output(
                "stderr",
                f"sluice: re-attached to the apply a stopped sluice left running (pid "
                f"{', '.join(map(str, pids))}); output so far in {spool.out}",
            )
            for line in spool.last_lines():
                output("stdout", line)
            readers, _ = tails(spool, output, from_end=True)

            def ended() -> bool:
                nonlocal pids
                if read_status(spool) is not None:
                    return True
                pids = still_running(pids, self.estate_name, job.target)
                return not pids

            try:
                async with asyncio.timeout(self.timeout):
                    await follow(readers, ended)
            except TimeoutError:
                return ApplyResult(
                    False, f"adopted apply still running after {format_duration(self.timeout)}"
                )
            except asyncio.CancelledError:
                with contextlib.suppress(ProcessLookupError, IndexError):
                    group = os.getpgid(pids[0])
                    await self._stop(group, lambda: not _group_alive(group), output, "aborted", job)
                raise
            code = read_status(spool)
            if code is None:
                return None
        else:
            output(
                "stderr",
                f"sluice: the apply ended while no sluice ran (exit {code}); output in {spool.out}",
            )
        return result_of(code, spool)

    async def _orphan_pids(self, target: str) -> list[int]:
        if self._orphans is None:
            self._orphans = asyncio.ensure_future(asyncio.to_thread(find_running, self.estate_name))
        pids = (await asyncio.shield(self._orphans)).get(target, [])
        return still_running(pids, self.estate_name, target)

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


async def _until(ended: Callable[[], bool], seconds: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not ended() and loop.time() < deadline:
        await asyncio.sleep(0.02)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
