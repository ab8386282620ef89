"""The ``tofu`` executor: OpenTofu (or Terraform) as a first-class apply, plan first.

Every apply is ``plan -out=PLANFILE -json`` then ``apply -json PLANFILE``: what is applied is
exactly what was planned (and, on a ``review = "plans"`` channel, reviewed — a state that moved
in between fails as a stale plan, never as an unreviewed apply). Progress, failures, state locks
and ``check`` warnings come from the tool's ``-json`` stream (:mod:`.tofu_plan`). Every command
writes to a spool (:mod:`.tofu_run`, :mod:`.spool`): a killed sluice does not kill an apply, and a
resume adopts it (:mod:`.tofu_adopt`).

Always non-interactive (``-input=false``, ``TF_IN_AUTOMATION=1``); one provider plugin cache is
shared by every target (``TF_PLUGIN_CACHE_DIR``, unless the user set one); ``init`` runs only when
needed (``init = "auto"``). A ``workspace`` is checked against ``workspace list`` and selected
through ``TF_WORKSPACE`` for that process only — never created.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sluice.engine.executors.base import ApplyResult, Job, OutputSink
from sluice.engine.executors.orphans import (
    find_running,
    still_running,
    wait_out,
)
from sluice.engine.executors.spool import Spool
from sluice.engine.executors.tofu_adopt import adopt, apply_result, look, stream_reader, tainted
from sluice.engine.executors.tofu_plan import StreamProgress, normalise
from sluice.engine.executors.tofu_review import MadePlan, Reviewed
from sluice.engine.executors.tofu_run import run_tool
from sluice.engine.executors.tofu_workdir import (
    ToolError,
    Workdir,
    build_workdir,
    init_fingerprint,
)
from sluice.engine.model.template import TemplateError, render
from sluice.engine.model.units import format_duration

if TYPE_CHECKING:
    from sluice.engine.model.estate import Estate, ExecutorSpec
    from sluice.engine.support.clock import Clock
    from sluice.engine.support.resources import Resources

#: The marker ``init = "auto"`` leaves in ``.terraform``: what the last init was made for.
INIT_MARKER = "sluice-init.sha256"


@dataclass(frozen=True)
class DriftResult:
    status: str  # in_sync | drifted | error
    detail: str = ""
    version: str | None = None  # what version_output says, when configured


class TofuExecutor:
    #: Applies are spooled and adoptable (see executors.spool, tofu_adopt).
    spools = True

    def __init__(self, spec: ExecutorSpec, estate: Estate, clock: Clock, resources: Resources):
        self.spec = spec
        self.settings = spec.settings
        self.base = estate.path.parent.resolve()
        self.estate = estate
        self.binary = str(self.settings.get("binary") or "tofu")
        self.timeout = float(self.settings.get("timeout") or 1800.0)
        self.lock_timeout = float(self.settings.get("lock_timeout") or 0.0)
        self.stop_grace = float(self.settings.get("stop_grace") or 300.0)
        self.work = estate.history_path.parent.resolve() / "tofu"
        self._init_locks: dict[Path, asyncio.Lock] = {}
        #: the approved plans the next applies must use (a ``review = "plans"`` channel's)
        self.reviews = Reviewed({c.name for c in estate.channels if c.review == "plans"})
        self._orphans: asyncio.Future[dict[str, list[int]]] | None = None

    # ---------------------------------------------------------------- the executor protocol

    def describe(self, job: Job) -> str:
        try:
            where = render(str(self.settings["dir"]), job.context).text
        except TemplateError as exc:
            return f"<{exc}>"
        return f"{self.binary} plan+apply in {where}" + (
            f" (workspace {self._workspace(job)})" if self.settings.get("workspace") else ""
        )

    async def apply(self, job: Job, output: OutputSink) -> ApplyResult:
        deadline = asyncio.get_running_loop().time() + self.timeout
        try:
            work = await self.prepare(job, output, deadline)
            plan = self.reviews.take(job)
            if isinstance(plan, str):
                return ApplyResult(False, plan)
            if plan is not None:
                self._check_reviewed(plan)
                output("stdout", f"sluice: applying the reviewed plan {plan.path.name}")
            else:
                plan = await self.make_plan(work, output, deadline, job)
        except ToolError as exc:
            return ApplyResult(False, str(exc))
        if plan.changes == 0:
            return ApplyResult(True, "no changes: the plan is empty, nothing applied", 0)
        progress = StreamProgress()
        apply_args = ["apply", "-input=false", "-json", *self._lock_args(), str(plan.path)]
        spool = Spool(job.spool) if job.spool else self._spool(work, "apply")
        try:
            job.launching()
            code = await self._run(work, apply_args, output, deadline, progress, spool=spool)
        except asyncio.CancelledError:
            await self._say_stopped(work, output)
            raise
        except ToolError as exc:  # timed out (stopped with SIGINT), or could not start
            await self._say_stopped(work, output)
            return ApplyResult(False, str(exc))
        fail_on_checks = bool(self.settings.get("fail_on_check_warnings"))
        return apply_result(code, progress, plan.warnings, fail_on_checks)

    async def look(self, job: Job) -> str:
        """Whether the apply in ``job.spool`` finished, still runs, or never started."""
        return await look(self, job)

    async def adopt(self, job: Job, output: OutputSink) -> ApplyResult | None:
        """Record the real outcome of the apply a stopped sluice left (see tofu_adopt)."""
        return await adopt(self, job, output)

    async def close(self) -> None:
        return None

    async def _say_stopped(self, work: Workdir, output: OutputSink) -> None:
        """After a stopped apply: say what the state holds now (tainted resources)."""
        deadline = asyncio.get_running_loop().time() + 30  # its own: the apply's may be spent
        try:
            async with asyncio.timeout(30):
                shown = await self._capture(work, ["show", "-json", *work.var_args], deadline)
            state = json.loads(shown or "{}")
        except (ToolError, ValueError, TimeoutError):
            output("stderr", "sluice: apply stopped; could not read the state afterwards")
            return
        found = sorted(tainted(state.get("values", {}).get("root_module", {})))
        output(
            "stderr",
            "sluice: apply stopped (SIGINT); state saved"
            + (f"; tainted, replaced by the next apply: {', '.join(found)}" if found else ""),
        )

    # ---------------------------------------------------------------- steps

    async def prepare(self, job: Job, output: OutputSink, deadline: float) -> Workdir:
        """Render the target's invocation, check its workspace, run init when needed."""
        work = self._workdir(job)
        if not work.cwd.is_dir():
            raise ToolError(f"no such directory: {work.cwd}")
        refused = await self._wait_for_orphans(job.target, output)
        if refused is not None:
            raise ToolError(refused.reason)
        if self.settings.get("workspace"):
            await self._check_workspace(work, self._workspace(job), output, deadline)
        await self._init(work, output, deadline)
        return work

    async def make_plan(
        self, work: Workdir, output: OutputSink, deadline: float, job: Job, show: bool = False
    ) -> MadePlan:
        """``plan -out=FILE -json``; with ``show``, also its normalised ``show -json``."""
        path = self.plan_path(job)
        # Saved plans hold the variables' values: readable by this user only.
        self.work.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        progress = StreamProgress()
        code = await self._run(
            work,
            [
                "plan",
                "-input=false",
                "-json",
                "-detailed-exitcode",
                f"-out={path}",
                *self._lock_args(),
                *work.var_args,
            ],
            output,
            deadline,
            progress,
        )
        if code not in (0, 2):
            raise ToolError(progress.reason("plan"))
        for warning in progress.warnings:
            output("stderr", f"warning: {warning}")
        normalised = None
        if show:
            shown = await self._capture(
                work, ["show", "-json", *work.var_args, str(path)], deadline
            )
            names = [job.target, *self._aliases(job.target)]
            normalised = normalise(json.loads(shown), names)
        # Exit 2: something changes (resources or outputs); 0: nothing, so nothing to apply.
        changes = max(progress.changes, 1) if code == 2 else 0
        return MadePlan(path, changes, tuple(progress.warnings), normalised, _sha256(path))

    async def drift(self, job: Job, output: OutputSink) -> DriftResult:
        """``plan -detailed-exitcode`` at ``job.version``, plus ``version_output``'s value."""
        deadline = asyncio.get_running_loop().time() + self.timeout
        try:
            work = await self.prepare(job, output, deadline)
            progress = StreamProgress()
            code = await self._run(
                work,
                [
                    "plan",
                    "-input=false",
                    "-json",
                    "-detailed-exitcode",
                    "-lock=false",
                    *work.var_args,
                ],
                output,
                deadline,
                progress,
            )
            version = None
            if self.settings.get("version_output"):
                version = await self._version_output(work, deadline)
        except ToolError as exc:
            return DriftResult("error", str(exc))
        if code == 0:
            return DriftResult("in_sync", "", version)
        if code == 2:
            counts = progress.summary or {}
            detail = ", ".join(f"{v} to {k}" for k, v in counts.items() if v) or "changes"
            return DriftResult("drifted", detail, version)
        return DriftResult("error", progress.reason("plan"), version)

    async def _wait_for_orphans(self, target: str, output: OutputSink) -> ApplyResult | None:
        """Wait out an apply of ``target`` that a killed sluice left running (see orphans)."""
        pids = await self.orphan_pids(target)

        async def look_again() -> list[int]:
            nonlocal pids
            pids = still_running(pids, self.estate.name, target)
            return pids

        return await wait_out(look_again, target, output, self.timeout, 0.2) if pids else None

    async def orphan_pids(self, target: str) -> list[int]:
        """Live processes of ``target``'s applies that a stopped sluice left (see orphans)."""
        if self._orphans is None:
            self._orphans = asyncio.ensure_future(asyncio.to_thread(find_running, self.estate.name))
        pids = (await asyncio.shield(self._orphans)).get(target, [])
        return still_running(pids, self.estate.name, target)

    @property
    def estate_name(self) -> str:
        return self.estate.name

    def _spool(self, work: Workdir, what: str = "") -> Spool:
        """The spool of the target's commands other than a spooled apply: ``logs/TARGET.*``."""
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", work.name)
        return Spool(self.work / "logs" / (f"{safe}.{what}" if what else safe))

    def plan_path(self, job: Job) -> Path:
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", f"{job.target}")
        return self.work / "plans" / safe / f"{job.action}-{job.version}.tfplan"

    def use_plan(self, job: Job, plan: MadePlan) -> None:
        """The next apply of ``job`` applies ``plan`` (approved) instead of planning again."""
        self.reviews.use(job, plan)

    # ---------------------------------------------------------------- helpers

    def _workdir(self, job: Job) -> Workdir:
        return build_workdir(self.settings, self.base, self.work, self.estate.name, job)

    def _workspace(self, job: Job) -> str:
        return render(str(self.settings["workspace"]), job.context).text

    def _aliases(self, target: str) -> tuple[str, ...]:
        spec = self.estate.targets.get(target)
        return tuple(getattr(spec, "aliases", ()) or ())

    def _lock_args(self) -> list[str]:
        return [f"-lock-timeout={int(self.lock_timeout)}s"] if self.lock_timeout else []

    def _check_reviewed(self, plan: MadePlan) -> None:
        if not plan.path.is_file() or _sha256(plan.path) != plan.file_sha256:
            raise ToolError(f"the reviewed plan {plan.path} changed or vanished; re-plan")

    async def _check_workspace(
        self, work: Workdir, name: str, output: OutputSink, deadline: float
    ) -> None:
        listing = await self._capture(work, ["workspace", "list"], deadline)
        names = {line.strip().lstrip("*").strip() for line in listing.splitlines()}
        if name not in names:
            shown = ", ".join(sorted(n for n in names if n)) or "none"
            raise ToolError(
                f"workspace {name!r} does not exist in {work.cwd} (has: {shown}); "
                "create it yourself — sluice never creates one"
            )
        work.env["TF_WORKSPACE"] = name

    async def _init(self, work: Workdir, output: OutputSink, deadline: float) -> None:
        mode = self.settings.get("init") or "auto"
        if mode == "never":
            return
        lock = self._init_locks.setdefault(work.cwd, asyncio.Lock())
        async with lock:  # one init at a time per directory (workspaces share one)
            marker = work.cwd / ".terraform" / INIT_MARKER
            wanted = self._init_fingerprint(work)
            if mode == "auto" and marker.is_file() and marker.read_text() == wanted:
                return
            errors: list[str] = []
            args = ["init", "-input=false", "-no-color", *work.init_args, *work.var_args]
            code = await self._run(work, args, output, deadline, StreamProgress(), errors)
            if code != 0:
                last = errors[-1] if errors else "see the log"
                raise ToolError(f"init failed (exit {code}): {last}")
            marker.parent.mkdir(exist_ok=True)
            marker.write_text(self._init_fingerprint(work))  # now with what init installed

    def _init_fingerprint(self, work: Workdir) -> str:
        return init_fingerprint(self.binary, work)

    async def _run(
        self,
        work: Workdir,
        args: list[str],
        output: OutputSink,
        deadline: float,
        progress: StreamProgress,
        errors: list[str] | None = None,
        spool: Spool | None = None,
    ) -> int:
        """Run one command; ``errors`` given, its output is plain text (init) and error lines
        are collected there; otherwise it is the ``-json`` stream, read into ``progress``."""
        if errors is None:
            return await self._spawn(work, args, stream_reader(progress, output), deadline, spool)

        def on_line(line: str) -> None:
            if line.strip():
                output("stdout", line)
                if "Error" in line:
                    errors.append(line.strip(" │╷╵"))

        return await self._spawn(work, args, on_line, deadline, spool)

    async def _capture(self, work: Workdir, args: list[str], deadline: float) -> str:
        lines: list[str] = []
        spool = self._spool(work, "capture")
        spool.out.unlink(missing_ok=True)
        spool.err.unlink(missing_ok=True)
        code = await self._spawn(work, args, lines.append, deadline, spool)
        if code != 0:
            raise ToolError(f"{args[0]} failed (exit {code}): {' | '.join(lines[-3:])}")
        return "\n".join(lines)

    async def _version_output(self, work: Workdir, deadline: float) -> str | None:
        name = str(self.settings["version_output"])
        outputs = json.loads(await self._capture(work, ["output", "-json"], deadline) or "{}")
        value = (outputs.get(name) or {}).get("value")
        return None if value is None else str(value)

    async def _spawn(
        self,
        work: Workdir,
        args: list[str],
        on_line: Callable[[str], None],
        deadline: float,
        spool: Spool | None = None,
    ) -> int:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise ToolError(f"timed out after {format_duration(self.timeout)}")
        try:
            finished = await run_tool(
                [self.binary, *args],
                cwd=work.cwd,
                env=work.env,
                spool=spool or self._spool(work),
                on_line=on_line,
                timeout=left,
                stop_grace=self.stop_grace,
            )
        except OSError as exc:
            raise ToolError(f"cannot run {self.binary}: {exc.strerror or exc}") from None
        if finished.timed_out:
            raise ToolError(
                f"{args[0]} timed out after {format_duration(self.timeout)}; stopped (SIGINT)"
            )
        assert finished.code is not None
        return finished.code


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
