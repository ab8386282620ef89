"""What a ``review = "plans"`` channel lets the tofu executor apply: approved plans only.

The rollout's review (:mod:`sluice.engine.rollout.review`) makes a wave's plans, and once they are
approved hands each to :meth:`Reviewed.use`; the target's next apply applies exactly that file.
An apply on such a channel that has no approved plan — its plan failed at review time, or it is
a retry after the reviewed plan was spent — is refused, never planned and applied unreviewed;
only an explicit bypass of the review (recorded with its reason) lets it plan for itself. The
hash of the last approved plan of each job is kept: a retry whose new plan normalises to the same
hash may use it without a second review (:meth:`Reviewed.same_as_approved`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sluice.engine.executors.tofu_plan import plan_hash

if TYPE_CHECKING:
    from sluice.engine.executors.base import Job

Key = tuple[str, str, str]  # (target, action, version)


@dataclass(frozen=True)
class MadePlan:
    """A saved plan: its file, how many resources change, and (when shown) its normalised form."""

    path: Path
    changes: int
    warnings: tuple[str, ...] = ()
    normalised: dict[str, Any] | None = None
    file_sha256: str = ""

    @property
    def hash(self) -> str:
        return plan_hash(self.normalised) if self.normalised is not None else ""


def key_of(job: Job) -> Key:
    return (job.target, job.action, job.version)


class Reviewed:
    """Approved plans waiting for their apply, and what each job's last approval was."""

    def __init__(self, channels: set[str]):
        #: the channels with ``review = "plans"``
        self.channels = channels
        self._next: dict[Key, MadePlan] = {}
        self._approved: dict[Key, str] = {}
        self._bypassed: set[Key] = set()
        self._errors: dict[Key, str] = {}

    def use(self, job: Job, plan: MadePlan) -> None:
        """``plan`` is approved: the next apply of ``job`` applies it."""
        key = key_of(job)
        self._next[key] = plan
        self._approved[key] = plan.hash
        self._bypassed.discard(key)
        self._errors.pop(key, None)

    def bypass(self, job: Job) -> None:
        """The review was bypassed (recorded, with a reason): ``job`` plans for itself."""
        self._bypassed.add(key_of(job))

    def failed(self, job: Job, reason: str) -> None:
        """``job``'s plan could not be made for review: its apply says so instead."""
        self._errors[key_of(job)] = reason

    def same_as_approved(self, job: Job, plan: MadePlan) -> bool:
        approved = self._approved.get(key_of(job))
        return bool(approved) and approved == plan.hash

    def take(self, job: Job) -> MadePlan | str | None:
        """The approved plan ``job`` must apply; None when it may plan for itself (no review on
        its channel, a rollback, or a bypassed review); a refusal (str) otherwise."""
        key = key_of(job)
        plan = self._next.pop(key, None)
        if plan is not None:
            return plan
        if job.action != "apply" or job.channel not in self.channels or key in self._bypassed:
            return None
        error = self._errors.get(key)
        return f"not applied: its plan for review failed: {error}" if error else (
            f"not applied: channel {job.channel} reviews plans and this apply has no approved "
            "plan; retry (t) plans it again for review"
        )  # fmt: skip
