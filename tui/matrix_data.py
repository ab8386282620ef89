"""The estate matrix as plain data (no textual here): its rows, each cell's state, the counts.

Building this for 1,000 targets × a few modules is a pass over dictionaries; the screen turns a
row into text only when it scrolls into view (:class:`~sluice.tui.widgets.matrix_grid.MatrixGrid`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sluice.engine.model.estate import Estate

#: (module, target) → the target's status in the running rollout of that module.
Running = dict[tuple[str, str], str]
#: (module, target) → the last ``sluice drift`` result when not in sync ("drifted", …).
Drift = dict[tuple[str, str], str]
#: Cell state → its mark (never colour alone) and the theme variable that colours it.
MARKS = {"rollout": "●", "drifted": "≠", "behind": "▼", "newest": " "}
STYLES = {
    "rollout": "gate-soaking",
    "drifted": "wave-failed",
    "behind": "gate-waiting",
    "newest": "wave-ok",
}


def cell_state(version: str, newest: str, in_rollout: bool, drift: str = "") -> str:
    """In the running rollout first (it is changing now), then drifted, then behind/newest."""
    if in_rollout:
        return "rollout"
    if drift:
        return "drifted"
    return "newest" if version == newest else "behind"


@dataclass(frozen=True)
class Cell:
    """One module on one target; ``version`` None: the module does not run there."""

    state: str = ""
    version: str | None = None
    note: str = ""  # the running rollout's status of the target, or the drift result


@dataclass
class MatrixRows:
    """What the matrix shows: ``targets[i]`` is row ``i``'s target ("" for a channel heading,
    whose words are ``headings[i]``)."""

    targets: list[str] = field(default_factory=list)
    headings: dict[int, str] = field(default_factory=dict)
    cells: dict[int, tuple[Cell, ...]] = field(default_factory=dict)
    #: target·module cells per state, and the targets shown
    tally: dict[str, int] = field(default_factory=dict)


def matrix_rows(
    estate: Estate,
    versions: dict[str, dict[str, str]],
    running: Running,
    drift: Drift,
    needle: str = "",
) -> MatrixRows:
    """The rows of the targets whose name (or channel's) contains ``needle``, by channel."""
    rows = MatrixRows(tally={"rollout": 0, "drifted": 0, "behind": 0, "shown": 0})
    needle = needle.lower()
    newest = {m: spec.versions[-1] for m, spec in estate.modules.items()}
    for channel in estate.channels:
        names = [
            n
            for n in channel.targets
            if not needle or needle in n.lower() or needle in channel.name.lower()
        ]
        if not names:
            continue
        rows.headings[len(rows.targets)] = f"{channel.name} · {len(names)} targets"
        rows.targets.append("")
        for name in names:
            cells = []
            for module in estate.modules:
                version = versions[module].get(name)
                if version is None:
                    cells.append(Cell())
                    continue
                status = running.get((module, name))
                drifted = drift.get((module, name), "")
                state = cell_state(version, newest[module], status is not None, drifted)
                if state != "newest":
                    rows.tally[state] += 1
                note = status.replace("_", " ") if status is not None else drifted
                cells.append(Cell(state, version, note))
            rows.cells[len(rows.targets)] = tuple(cells)
            rows.targets.append(name)
            rows.tally["shown"] += 1
    return rows
