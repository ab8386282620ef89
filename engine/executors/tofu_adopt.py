"""A tofu apply's end: its result from the JSON stream, and adopting one a stopped sluice left.

The apply runs in the job's spool (:mod:`.tofu_run`), so a ``kill -9`` of sluice leaves it
running to its end, with its exit status in the spool's status file. ``sluice resume`` then asks
:func:`look` — ``finished`` (a status), ``running`` (its marked process still runs) or ``none``
(the apply never started: sluice was stopped during init or plan, so nothing was applied) — and
:func:`adopt` re-reads the apply's whole JSON stream from the spool (following it while it
runs) for its real outcome, which is recorded without running it again.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from sluice.engine.executors.base import ApplyResult, Job, OutputSink
from sluice.engine.executors.orphans import still_running
from sluice.engine.executors.spool import Spool, follow, read_status, tails
from sluice.engine.executors.tofu_plan import StreamProgress, parse_line
from sluice.engine.executors.tofu_run import stop
from sluice.engine.model.units import format_duration


class Adopter(Protocol):
    """What :func:`look` and :func:`adopt` need of the tofu executor."""

    timeout: float
    stop_grace: float
    settings: Mapping[str, Any]

    @property
    def estate_name(self) -> str: ...

    async def orphan_pids(self, target: str) -> list[int]: ...


def stream_reader(progress: StreamProgress, output: OutputSink) -> Callable[[str], None]:
    """``on_line`` for a ``-json`` stream: each message read into ``progress``, its human
    text to ``output`` (warnings and errors as stderr); other lines as they are."""

    def on_line(line: str) -> None:
        message = parse_line(line)
        if message is None:
            if line.strip():
                output("stdout", line)
            return
        text = progress.feed(message)
        if text:
            level = message.get("@level")
            output("stderr" if level in ("error", "warn") else "stdout", text)

    return on_line


def apply_result(
    code: int, progress: StreamProgress, warnings: tuple[str, ...], fail_on_checks: bool
) -> ApplyResult:
    """The outcome of ``apply -json PLANFILE`` that exited ``code``."""
    if code != 0:
        return ApplyResult(False, progress.reason("apply"), code)
    checks = [w for w in (*warnings, *progress.warnings) if "check" in w.lower()]
    if checks and fail_on_checks:
        return ApplyResult(False, f"check warning: {checks[0]}", 0)
    done = f"applied {progress.applied} resource change(s)"
    return ApplyResult(True, done + (f"; warning: {checks[0]}" if checks else ""), 0)


async def look(executor: Adopter, job: Job) -> str:
    """``finished``, ``running`` or ``none`` for the apply in ``job.spool``."""
    if job.spool is None:
        return "none"
    spool = Spool(job.spool)
    if read_status(spool) is not None:
        return "finished"
    if not spool.out.exists():  # stopped before the apply itself started: nothing applied
        return "none"
    return "running" if await executor.orphan_pids(job.target) else "none"


async def adopt(executor: Adopter, job: Job, output: OutputSink) -> ApplyResult | None:
    """Record the real outcome of the apply in ``job.spool``, following it while it runs."""
    assert job.spool is not None
    spool = Spool(job.spool)
    progress = StreamProgress()
    on_line = stream_reader(progress, output)
    readers, _ = tails(spool, lambda stream, line: on_line(line))
    code = read_status(spool)
    if code is not None:
        output("stderr", f"sluice: the apply ended while no sluice ran (exit {code})")
        await follow(readers, lambda: True)
    else:
        pids = await executor.orphan_pids(job.target)
        output(
            "stderr",
            "sluice: re-attached to the apply a stopped sluice left running (pid "
            f"{', '.join(map(str, pids))}); its output from the start follows",
        )

        def ended() -> bool:
            nonlocal pids
            if read_status(spool) is not None:
                return True
            pids = still_running(pids, executor.estate_name, job.target)
            return not pids

        try:
            async with asyncio.timeout(executor.timeout):
                await follow(readers, ended)
        except TimeoutError:
            took = format_duration(executor.timeout)
            return ApplyResult(False, f"adopted apply still running after {took}")
        except asyncio.CancelledError:
            if pids:
                group = os.getpgid(pids[0]) if _alive(pids[0]) else pids[0]
                await stop(group, ended, executor.stop_grace)
            raise
        code = read_status(spool)
        if code is None:
            return None
    fail_on_checks = bool(executor.settings.get("fail_on_check_warnings"))
    return apply_result(code, progress, (), fail_on_checks)


def _alive(pid: int) -> bool:
    try:
        os.getpgid(pid)
    except ProcessLookupError:
        return False
    return True


def tainted(module: dict[str, Any]) -> list[str]:
    """Addresses of the tainted resources in a ``show -json`` module (and its children)."""
    found = [str(r.get("address")) for r in module.get("resources", ()) if r.get("tainted")]
    for child in module.get("child_modules", ()):
        found += tainted(child)
    return found
