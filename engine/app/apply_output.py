"""An apply's full output from its spool file, for the console's target detail.

History keeps only the head and tail of each apply's output; the spool
(``.sluice/applies/<rollout>/<target>.<attempt>.log`` and ``.err``, written by
:mod:`sluice.engine.executors.spool`) keeps all of it until it is pruned. ``sluice show --output``
prints it (:func:`sluice.engine.app.spools.print_output`); this reads it as lines for a screen,
masked the same way, bounded in memory.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path

from sluice.engine.app.spools import NoOutput, last_spool
from sluice.engine.model.estate import Estate
from sluice.engine.model.template import redact
from sluice.engine.rollout.jobs import collect_secrets

#: The most lines a screen is given (the newest are kept); the file keeps every one.
MAX_LINES = 20_000


@dataclass(frozen=True)
class SpooledOutput:
    """stdout's lines, then stderr's after a ``── stderr`` line; secrets masked."""

    lines: tuple[str, ...]
    path: Path  # the stdout file (its ``.err`` sibling holds stderr)
    dropped: int = 0  # older lines left out beyond ``MAX_LINES``


def spooled_output(
    estate: Estate, rollout_id: int, target: str, max_lines: int = MAX_LINES
) -> SpooledOutput | None:
    """The output of ``target``'s last apply in rollout ``rollout_id``; None without a spool
    (its executor does not spool, or the spool was pruned)."""
    try:
        spool = last_spool(estate, rollout_id, target)
    except NoOutput:
        return None
    secrets = collect_secrets(estate)
    lines: deque[str] = deque(maxlen=max_lines)
    total = 0
    for path, heading in ((spool.out, None), (spool.err, "── stderr")):
        try:
            file = open(path, "rb")  # noqa: SIM115 (closed below; a missing file is no output)
        except FileNotFoundError:
            continue
        with file:
            first = True
            for raw in file:
                if first and heading:
                    lines.append(heading)
                    total += 1
                first = False
                lines.append(redact(raw.decode("utf-8", "replace").rstrip("\r\n"), secrets))
                total += 1
    return SpooledOutput(tuple(lines), spool.out, dropped=total - len(lines))
