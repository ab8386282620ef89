"""The console's point-in-time restore: the parts of ``sluice rollback --to``, one after another.

Each part is an interactive rollout like any other on the console screen (its gates wait for
the operator, ``x`` aborts it); when one ends ``done`` the next is planned again from the ledger,
so a restore cut off here is finished by ``sluice rollback ESTATE --to …`` or by starting it again.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from sluice.engine.app.restore import (
    PointInTime,
    RestorePart,
    changes_since,
    restore_marker,
    restore_parts,
    restore_plan,
)
from sluice.engine.rollout.events import Event, RolloutFinished
from sluice.engine.store.history import History, RolloutRecord

if TYPE_CHECKING:
    from sluice.engine.model.estate import Estate
    from sluice.tui.screens.console import ConsoleScreen


def point_of(record: RolloutRecord) -> PointInTime | None:
    """The moment ``record`` finished (None while it runs)."""
    return None if record.finished is None else PointInTime(record.finished, f"#{record.id}")


def parts_to(history: History, estate: Estate, point: PointInTime) -> list[RestorePart]:
    return restore_parts(changes_since(history, estate, point)[0])


def preview_text(parts: list[RestorePart], point: PointInTime, most: int = 12) -> str:
    """What the confirmation shows: one line per part, newest change first."""
    lines = [
        f"Every target and module that changed since {point.label} goes back to what it ran "
        f"then, production first, as {len(parts)} recorded rollout(s):",
        "",
    ]
    for index, part in enumerate(parts, 1):
        moves = sorted({f"{c.now} → {c.then}" for c in part.changes})
        channels = sorted({c.channel for c in part.changes})
        lines.append(
            f"{index}. {part.module} on {len(part.changes)} target(s) ({', '.join(channels)}): "
            f"{', '.join(moves)}"
        )
    if len(lines) > most + 2:
        lines = [*lines[: most + 2], f"… and {len(lines) - most - 2} more parts"]
    return "\n".join(lines)


async def drive_restore(console: ConsoleScreen, point: PointInTime) -> str:
    """Run the restore's parts in turn on ``console``; returns what to tell the operator."""
    driver = console.driver
    history, estate = driver.session.history, driver.estate
    done = 0
    while True:
        parts = parts_to(history, estate, point)
        if not parts:
            return f"restore to {point.label} done: {done} part(s) run"
        part = parts[0]
        finished = asyncio.Event()
        rollout = console.start(
            restore_plan(estate, part, point),
            extra={"restore": restore_marker(point, part, len(parts), "reverse")},
        )
        if rollout is None:
            return "restore refused"

        def ended(event: Event, finished: asyncio.Event = finished) -> None:
            if isinstance(event, RolloutFinished):
                finished.set()

        rollout.bus.listen(ended)
        await finished.wait()
        done += 1
        if rollout.outcome is None or rollout.outcome.outcome != "done":
            outcome = rollout.outcome.outcome if rollout.outcome else "ended"
            return (
                f"restore to {point.label} stopped: part {done} (#{rollout.rollout_id}) {outcome}; "
                f"`sluice rollback {estate.path} --to {point.label.lstrip('#')}` finishes it"
            )
