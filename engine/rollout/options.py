"""What a rollout is asked to do, and what history says it already did.

Two values a :class:`sluice.engine.rollout.orchestrator.Rollout` is built with, besides its estate
and plan: :class:`RolloutOptions`, the operator's choices (the command line's flags, the
console), and :class:`ResumeState`, what history recorded of the rollout before a restart. Both
are frozen: a rollout reads them, never changes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

#: (wave, check, target) → the baseline measured before a restart (``None``: it had no data).
Baselines = Mapping[tuple[int, str, str], float | None]


@dataclass(frozen=True)
class RolloutOptions:
    """How the operator asked the rollout to run.

    Attributes:
        interactive: wait for the operator at gates (the console). Headless runs stop instead:
            a manual gate with ``approve`` is approved; without it the rollout stops (exit 4);
            a failed or inconclusive gate or a spent budget halts it (exit 1).
        approve: ``--approve``: headless, approve manual gates, entries and reviewed plans.
        approve_destroy: ``--approve-destroy``: also approve reviewed plans that destroy or
            replace resources.
        until_wave: stop (resumable, exit 4) after this wave.
        reapply_unknown: apply again the targets whose apply started and never finished (a
            resume); ``False`` (``--no-reapply-unknown``) leaves them to the operator.
        wait: ``--wait``: a headless run waits at approvals, closed windows and freezes
            instead of stopping.
        window_bypass: ``--bypass-window REASON``: a headless run starts waves outside their
            change windows, recorded with this reason.
        rollback_only: ``sluice rollback``: the planned targets run their ``to_version``
            already; roll each back to its ``from_version``, then finish.
    """

    interactive: bool = True
    approve: bool = False
    approve_destroy: bool = False
    until_wave: int | None = None
    reapply_unknown: bool = True
    wait: bool = False
    window_bypass: str = ""
    rollback_only: bool = False


@dataclass(frozen=True)
class ResumeState:
    """What history recorded of a rollout before it stopped: a resume continues from there.

    Attributes:
        start_wave: the first wave not finished (the earlier ones are never run again).
        prior: target name → (status, version) its applies recorded.
        baselines: the baselines recorded before the restart; a resumed wave compares with
            these, never with targets it already upgraded.
        entered: waves that started before the restart (their entry approval was given then).
        stopped: targets whose last apply sluice itself stopped and recorded ``aborted`` (the
            console quit, an abort): re-applied, never adopted — its status is that of a
            process sluice signalled, not an outcome.
    """

    start_wave: int = 1
    prior: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    baselines: Baselines = field(default_factory=dict)
    entered: frozenset[int] = frozenset()
    stopped: frozenset[str] = frozenset()
