"""IaC across the estate: plan previews grouped by normalised plan, and drift checks.

``sluice plan ESTATE M@V --preview`` and the ``review = "plans"`` gate both call
:func:`preview_targets`; ``sluice drift`` calls :func:`drift_targets`. Only targets whose executor
is ``kind = "tofu"`` can be previewed or checked; the others are reported as such.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sluice.engine.executors.base import Job, create_executor
from sluice.engine.executors.tofu import MadePlan, TofuExecutor, ToolError
from sluice.engine.executors.tofu_plan import PlanGroup, group_plans
from sluice.engine.model.estate import Estate
from sluice.engine.model.plan import PlannedTarget
from sluice.engine.support.clock import Clock
from sluice.engine.support.resources import Resources

#: Plans made at once by a preview (each is a process; the machine has few cores).
DEFAULT_PARALLEL = 4


@dataclass
class Preview:
    """Every previewed target's plan, grouped; and those that could not be planned."""

    groups: list[PlanGroup]
    plans: dict[str, MadePlan]
    errors: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # target → why (not tofu)

    @property
    def destroys(self) -> bool:
        from sluice.engine.executors.tofu_plan import destroys

        return any(destroys(g.plan) for g in self.groups)

    def hashes(self) -> dict[str, str]:
        """Target → sha256 of its saved plan file (what an approval approves)."""
        return {t: p.file_sha256 for t, p in sorted(self.plans.items())}

    def to_dict(self) -> dict[str, Any]:
        return {
            "groups": [g.to_dict() for g in self.groups],
            "outliers": [t for g in self.groups if g.outlier for t in g.targets],
            "plan_files": {t: str(p.path) for t, p in sorted(self.plans.items())},
            "plan_sha256": self.hashes(),
            "errors": self.errors,
            "skipped": self.skipped,
        }


class TofuPool:
    """One executor per ``[executors.NAME]`` of kind tofu, for commands outside a rollout."""

    def __init__(self, estate: Estate):
        self.estate = estate
        self.clock = Clock()
        self.resources = Resources()
        self._executors: dict[str, TofuExecutor] = {}

    def executor(self, target: str) -> TofuExecutor | None:
        name = self.estate.targets[target].executor
        spec = self.estate.executors.get(name)
        if spec is None or spec.kind != "tofu":
            return None
        if name not in self._executors:
            made = create_executor(spec, self.estate, self.clock, self.resources)
            assert isinstance(made, TofuExecutor)
            self._executors[name] = made
        return self._executors[name]

    async def close(self) -> None:
        await self.resources.close()


def job_for(estate: Estate, module: str, planned: PlannedTarget, action: str = "apply") -> Job:
    target = estate.targets[planned.name]
    return Job(
        target=planned.name,
        channel=target.channel,
        module=module,
        version=planned.to_version,
        previous_version=planned.from_version,
        action=action,
        vars=target.vars,
    )


async def preview_targets(
    estate: Estate,
    jobs: Iterable[Job],
    *,
    parallel: int = DEFAULT_PARALLEL,
    pool: TofuPool | None = None,
    on_done: Callable[[str, int, int], None] | None = None,
    output: Callable[[str, str, str], None] | None = None,
) -> Preview:
    """Plan each job (``plan -out``, ``show -json``), normalise, hash and group the plans."""
    own = pool is None
    pool = pool or TofuPool(estate)
    todo = list(jobs)
    preview = Preview([], {})
    gate = asyncio.Semaphore(max(1, parallel))
    done = 0

    async def one(job: Job) -> None:
        nonlocal done
        executor = pool.executor(job.target)
        if executor is None:
            kind = estate.executors[estate.targets[job.target].executor].kind
            preview.skipped[job.target] = f"executor kind {kind!r} has no plan to preview"
            return
        async with gate:
            deadline = asyncio.get_running_loop().time() + executor.timeout

            def sink(stream: str, line: str) -> None:
                if output is not None:
                    output(job.target, stream, line)

            try:
                work = await executor.prepare(job, sink, deadline)
                preview.plans[job.target] = await executor.make_plan(
                    work, sink, deadline, job, show=True
                )
            except ToolError as exc:
                preview.errors[job.target] = str(exc)
            except (OSError, ValueError) as exc:
                preview.errors[job.target] = f"{type(exc).__name__}: {exc}"
        done += 1
        if on_done is not None:
            on_done(job.target, done, len(todo))

    try:
        await asyncio.gather(*(one(job) for job in todo))
    finally:
        if own:
            await pool.close()
    normalised = {t: p.normalised or {} for t, p in preview.plans.items() if p.changes}
    channel_of = {t: estate.targets[t].channel for t in normalised}
    preview.groups = group_plans(normalised, channel_of)
    return preview


# ---------------------------------------------------------------------------- drift


@dataclass(frozen=True)
class DriftRow:
    target: str
    module: str
    ledger: str
    status: str  # in_sync | drifted | error | version_mismatch | skipped
    detail: str = ""
    state_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "module": self.module,
            "ledger_version": self.ledger,
            "state_version": self.state_version,
            "status": self.status,
            "detail": self.detail,
        }


async def drift_targets(
    estate: Estate,
    module: str,
    ledger: dict[str, str],
    *,
    parallel: int = DEFAULT_PARALLEL,
    on_done: Callable[[str, int, int], None] | None = None,
) -> list[DriftRow]:
    """``plan -detailed-exitcode`` of every target of ``module`` at its ledger version."""
    pool = TofuPool(estate)
    initial = estate.modules[module].initial
    names = [t.name for t in estate.targets.values() if t.runs(module)]
    rows: dict[str, DriftRow] = {}
    gate = asyncio.Semaphore(max(1, parallel))

    async def one(name: str) -> None:
        version = ledger.get(name, initial)
        executor = pool.executor(name)
        if executor is None:
            rows[name] = DriftRow(name, module, version, "skipped", "not a tofu target")
            return
        planned = PlannedTarget(name, estate.targets[name].channel, "", version, version)
        async with gate:
            result = await executor.drift(job_for(estate, module, planned), lambda s, line: None)
        status, detail = result.status, result.detail
        if status != "error" and result.version is not None and result.version != version:
            status = "version_mismatch"
            detail = f"ledger says {version}, state says {result.version}" + (
                f"; {detail}" if detail else ""
            )
        rows[name] = DriftRow(name, module, version, status, detail, result.version)
        if on_done is not None:
            on_done(name, len(rows), len(names))

    try:
        await asyncio.gather(*(one(name) for name in names))
    finally:
        await pool.close()
    return [rows[name] for name in names]


def save_drift(estate: Estate, rows: list[DriftRow], at: float) -> Path:
    """Keep the last drift result per target (the console shows it) beside the history."""
    path = estate.history_path.parent / "tofu" / "drift.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    for row in rows:
        known[f"{row.module}/{row.target}"] = {**row.to_dict(), "checked": at}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(known, indent=2, sort_keys=True))
    tmp.replace(path)
    return path


def load_drift(estate: Estate) -> dict[str, dict[str, Any]]:
    """``module/target`` → the last drift result saved by :func:`save_drift` (empty if none)."""
    try:
        data = json.loads((estate.history_path.parent / "tofu" / "drift.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def last_drift(estate: Estate, module: str) -> dict[str, str]:
    """Target → its last drift status for ``module`` when it was not in sync (for the console)."""
    words = {"drifted": "drifted", "version_mismatch": "version mismatch", "error": "drift error"}
    found = {}
    for key, row in load_drift(estate).items():
        if isinstance(row, dict) and key.startswith(f"{module}/") and row.get("status") in words:
            found[key.split("/", 1)[1]] = words[row["status"]]
    return found
