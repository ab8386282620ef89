"""What every key does, by binding id: one text for the help screen and the command palette.

Bindings carry ids (``rollout.pause``…) so users can remap them with ``App.set_keymap``; the help
screen and the palette read the key actually bound, never a hard-coded one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import NamedTuple

from textual.app import App
from textual.binding import Binding
from textual.dom import DOMNode

KEY_HELP: dict[str, str] = {
    "rollout.new": "New rollout: pick module and version, see the plan (waves, blast radius, ETA), confirm",
    "rollout.pause": "Pause the rollout (no new applies start, no automatic advance) — or resume it",
    "rollout.advance": "Advance: approve a waiting gate, or end the current soak early",
    "rollout.retry": "Retry the selected failed target",
    "rollout.rollback_wave": "Roll back the selected wave to the versions it had before (asks first)",
    "rollout.rollback_target": "Roll back the selected target to the version it had before (asks first)",
    "rollout.abort": "Abort the rollout: stop in-flight applies, start nothing new (asks first)",
    "rollout.bypass": "Bypass the current gate or halt — an emergency skip that needs a reason",
    "target.dashboard": "Show the selected target's dashboard link and copy it to the clipboard",
    "target.detail": "The selected target in full: ledger, last apply's output, measurements, vars",
    "tree.module": "Show the next module's versions in the estate tree (when no rollout runs)",
    "tree.filter": "Filter the estate tree by target name (enter keeps it, escape clears it)",
    "tree.clear_filter": "Clear the tree filter",
    "app.history": "History of past rollouts: enter shows one, p replays it, b backtests it, u restores to it, t lists its targets",
    "app.matrix": "Estate matrix: every target × module, the version it runs, by channel",
    "detail.close": "Back",
    "detail.copy_link": "Copy the target's dashboard link to the clipboard",
    "detail.open_link": "Open the target's dashboard with the system's browser opener",
    "matrix.close": "Back (or leave the filter)",
    "matrix.filter": "Filter the matrix by target or channel name",
    "matrix.detail": "Open the selected target's detail",
    "app.help": "This help: every key and what it does",
    "app.quit": "Quit (asks while a rollout runs; it stays resumable)",
    "app.palette": "Command palette: every action and theme by name",
    "history.show": "Show the selected rollout's record: waves, gates, targets, operator actions",
    "history.replay": "Replay the selected rollout on the console's screen",
    "history.backtest": "Backtest: re-judge the selected rollout's measurements with today's checks",
    "history.restore": "Restore every target and module to what it ran when the selected rollout ended (asks first)",
    "history.targets": "The estate's targets; enter on one shows its detail with this rollout's measurements",
    "history.close": "Back to the console",
    "replay.play": "Play or pause the replay",
    "replay.faster": "Replay faster (1× … 60×)",
    "replay.slower": "Replay slower",
    "replay.previous_wave": "Seek to the start of the previous wave",
    "replay.next_wave": "Seek to the start of the next wave",
    "replay.back_time": "Seek 30 seconds back",
    "replay.forward_time": "Seek 30 seconds forward",
    "replay.close": "Leave the replay",
}

#: Palette titles (short imperative phrases) by binding id.
TITLES: dict[str, str] = {
    "rollout.new": "New rollout…",
    "rollout.pause": "Pause / resume rollout",
    "rollout.advance": "Advance (approve gate / end soak)",
    "rollout.retry": "Retry selected target",
    "rollout.rollback_wave": "Roll back selected wave…",
    "rollout.rollback_target": "Roll back selected target…",
    "rollout.abort": "Abort rollout…",
    "rollout.bypass": "Bypass gate…",
    "target.dashboard": "Dashboard link of selected target",
    "target.detail": "Target detail",
    "tree.module": "Estate tree: next module",
    "tree.filter": "Filter estate tree",
    "app.history": "History",
    "app.matrix": "Estate matrix",
    "detail.copy_link": "Copy dashboard link",
    "detail.open_link": "Open dashboard",
    "matrix.filter": "Filter matrix",
    "matrix.detail": "Detail of selected target",
    "app.help": "Help: keys",
    "app.quit": "Quit",
    "history.show": "Show selected rollout",
    "history.replay": "Replay selected rollout",
    "history.backtest": "Backtest selected rollout",
    "history.restore": "Restore estate to selected rollout…",
    "history.targets": "Targets of the estate (detail with this rollout's measurements)",
    "history.close": "Back to console",
    "replay.play": "Play / pause replay",
    "replay.faster": "Replay faster",
    "replay.slower": "Replay slower",
    "replay.previous_wave": "Seek to previous wave",
    "replay.next_wave": "Seek to next wave",
    "replay.back_time": "Seek back 30 s",
    "replay.forward_time": "Seek forward 30 s",
    "replay.close": "Leave replay",
}


class KeyInfo(NamedTuple):
    key: str
    id: str
    action: str
    description: str
    node: DOMNode | None


def describe(binding: Binding) -> str:
    return KEY_HELP.get(binding.id or "", binding.description)


def active_keys(app: App[object], node: DOMNode) -> Iterator[KeyInfo]:
    """The bindings with ids active where ``node`` (a screen) is, keys as remapped, deduplicated."""
    seen: set[str] = set()
    for active in node.active_bindings.values():  # type: ignore[attr-defined]
        binding = active.binding
        if not binding.id or binding.id in seen:
            continue
        seen.add(binding.id)
        yield KeyInfo(
            app.get_key_display(binding), binding.id, binding.action, describe(binding), active.node
        )


def class_keys(
    app: App[object], bindings: Iterable[Binding | tuple[str, ...]]
) -> Iterator[KeyInfo]:
    """The bindings of a class that is not on screen (for the help of other screens).

    Keys as the user's keymap has them (``App.set_keymap``: a class's bindings are remapped only
    once it is on screen).
    """
    keymap: dict[str, str] = getattr(app, "_keymap", {})
    for binding in bindings:
        if isinstance(binding, Binding) and binding.id:
            spec = keymap.get(binding.id, binding.key)
            keys = [app.get_key_display(replace(binding, key=k)) for k in spec.split(",")]
            yield KeyInfo(" ".join(keys), binding.id, binding.action, describe(binding), None)
