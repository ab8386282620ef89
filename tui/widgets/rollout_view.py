"""The rollout view: header, estate tree, wave progress, metric sparklines and log, fed by events.

The live console and the replay screen both use this view: the only difference is where the
events come from. :meth:`RolloutView.follow` is the one adapter from the engine's event stream to
Textual: an async worker folds each event into the :class:`~sluice.tui.model.ConsoleModel` (cheap, no
widgets touched) and schedules at most one :class:`RolloutView.Changed` message per frame; the
handler repaints only what the model marked dirty, inside ``app.batch_update()``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from textual import on, work
from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.reactive import reactive
from textual.widgets import Input, Tree

from sluice.engine.rollout.events import (
    EventBus,
    Lagged,
    Notice,
    RolloutFinished,
    StateChanged,
    Subscription,
)
from sluice.tui.model import ConsoleModel
from sluice.tui.themes import Palette
from sluice.tui.widgets.estate_tree import EstateTree, NodeRef
from sluice.tui.widgets.header import RolloutHeader
from sluice.tui.widgets.metrics import MetricsPanel
from sluice.tui.widgets.rollout_log import RolloutLog
from sluice.tui.widgets.wave_progress import WaveProgress

#: Repaint at most this often, however fast events arrive.
FRAME_SECONDS = 1 / 20
#: Yield to the event loop after folding this many queued events in a row.
YIELD_EVERY = 100
ALERT_STATES: dict[str, SeverityLevel] = {
    "halted": "error",
    "inconclusive": "warning",
    "awaiting_approval": "information",
    "awaiting_entry": "information",
    "held": "information",
    "rolled_back": "warning",
}


class RolloutView(Vertical):
    """Everything about one rollout (or the idle estate), drawn from a :class:`ConsoleModel`."""

    BINDINGS = [
        Binding("slash", "filter", "Filter", id="tree.filter", show=False),
        Binding("escape", "clear_filter", "Clear filter", id="tree.clear_filter", show=False),
        Binding("enter", "target_detail", "Detail", id="target.detail", show=False),
    ]

    selection: reactive[NodeRef | None] = reactive(None, init=False)
    """The tree node the other panes focus on (None: follow the current wave)."""

    class DetailRequested(Message):
        """``enter`` on a target: the app opens its detail (live, replay: the same screen)."""

        def __init__(self, view: RolloutView, target: str) -> None:
            super().__init__()
            self.view = view
            self.target = target

    class TargetSelected(Message):
        """The tree's cursor moved (``target`` None: to a wave or a channel)."""

        def __init__(self, view: RolloutView, target: str | None) -> None:
            super().__init__()
            self.view = view
            self.target = target

    class Changed(Message):
        """The model changed; one pending message stands for any number of events."""

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, RolloutView.Changed)

    def __init__(self, model: ConsoleModel, *, mode: str = "live", id: str | None = None):
        super().__init__(id=id)
        self.model = model
        self.mode = mode
        self._pending = False
        self._shown_wave: int | None = None

    def compose(self) -> ComposeResult:
        yield RolloutHeader(id="header")
        with Horizontal(id="panes"):
            with Vertical(id="tree-pane"):
                yield Input(placeholder="filter targets…", id="tree-filter")
                yield EstateTree(id="tree")
            yield WaveProgress(id="waves")
            yield MetricsPanel(id="metrics")
        yield RolloutLog(id="log")

    async def on_mount(self) -> None:
        pane = self.query_one("#tree-pane")
        pane.border_title = "estate"
        pane.border_subtitle = "⏎ detail · / filter"
        self.query_one(RolloutHeader).mode = self.mode
        self.watch(self.app, "theme", self._theme_changed, init=False)
        self.set_interval(1.0, self._tick)
        await self.repaint()
        self.query_one(EstateTree).focus()

    # ------------------------------------------------------------------ the adapter

    @property
    def palette(self) -> Palette:
        variables = {**self.app.get_theme_variable_defaults(), **self.app.current_theme.variables}
        return Palette(variables)

    def follow(self, bus: EventBus, resync: Callable[[], None] | None = None) -> None:
        """Fold ``bus``'s events into the model from now on (the one adapter).

        Subscribes at once, so no event emitted after this call is missed; ``resync`` copies
        the engine's own state into the model when the console fell behind (``Lagged``).
        """
        self._feed(bus.subscribe(), resync)

    @work(exclusive=True, group="feed")
    async def _feed(self, subscription: Subscription, resync: Callable[[], None] | None) -> None:
        try:
            folded = 0
            async for item in subscription:
                self.model.apply(item)
                folded += 1
                if folded % YIELD_EVERY == 0:
                    # A burst (a soak round of a big wave) is queued all at once: let key
                    # presses and frames in between rather than folding it in one go.
                    await asyncio.sleep(0)
                if isinstance(item, Lagged) and resync is not None:
                    resync()
                elif isinstance(item, StateChanged | RolloutFinished | Notice):
                    self._alert(item)
                self.schedule()
        finally:
            subscription.close()

    def schedule(self) -> None:
        """Ask for one repaint within a frame (more calls before then change nothing)."""
        if not self._pending:
            self._pending = True
            self.set_timer(FRAME_SECONDS, self._post_changed)

    def _post_changed(self) -> None:
        self._pending = False
        self.post_message(self.Changed())

    def _alert(self, item: StateChanged | RolloutFinished | Notice) -> None:
        if self.mode == "replay":
            return
        if isinstance(item, Notice):
            severity: SeverityLevel = (
                "error"
                if item.level == "error"
                else "warning"
                if item.level == "warning"
                else "information"
            )
            self.notify(item.message, severity=severity, timeout=8, markup=False)
        elif isinstance(item, RolloutFinished):
            self.notify(item.summary, title=f"rollout {item.outcome}", timeout=10, markup=False)
        elif item.state in ALERT_STATES and item.detail:
            self.notify(
                item.detail,
                title=item.state.replace("_", " "),
                severity=ALERT_STATES[item.state],
                markup=False,
            )

    @on(Changed)
    async def _changed(self) -> None:
        if not self.screen.is_current:
            # Under the matrix or a target's detail nobody sees this view: the model keeps
            # folding (and marking what changed), and :meth:`shown_again` repaints it at once.
            return
        await self.repaint_dirty()

    def shown_again(self) -> None:
        """The view's screen is shown again: repaint what changed while it was hidden."""
        self.schedule()

    # ------------------------------------------------------------------ painting

    async def repaint(self) -> None:
        """Rebuild every pane from the model (a new plan, a seek, a new theme)."""
        self.model.dirty.structure = True
        await self.repaint_dirty()

    async def repaint_dirty(self) -> None:
        dirty = self.model.take_dirty()
        palette = self.palette
        tree = self.query_one(EstateTree)
        waves = self.query_one(WaveProgress)
        log = self.query_one(RolloutLog)
        with self.app.batch_update():
            if dirty.structure:
                log.show(self.model, log.source, palette)
                tree.rebuild(self.model, palette)
                await waves.rebuild(self.model, palette)
                await self._focus_panes(force=True)
            else:
                tree.refresh_targets(dirty.targets)
                touched = dirty.waves | {
                    t.wave
                    for name in dirty.targets
                    if (t := self.model.targets.get(name)) and t.wave is not None
                }
                tree.refresh_waves(dirty.waves)
                waves.refresh_waves(self.model, palette, touched)
                metrics = self.query_one(MetricsPanel)
                if self._followed_wave() != self._shown_wave:
                    await self._focus_panes()
                elif metrics.wave in dirty.metrics:
                    metrics.repaint(self.model, palette)
                if dirty.log or dirty.output:
                    log.append_new(self.model, palette)
            self.query_one(RolloutHeader).show(self.model)
            # The version column is one module's: say which.
            self.query_one("#tree-pane").border_title = f"estate · {self.model.module}"

    def _tick(self) -> None:
        """Once a second: the clock-driven parts (elapsed, ETA, soak countdown)."""
        if not self.screen.is_current:
            return
        self.query_one(RolloutHeader).tick(self.model)
        soaking = {
            n
            for n, w in self.model.waves.items()
            if w.status == "soaking" or self.model.watch_left(w) is not None
        }
        if soaking:
            self.query_one(WaveProgress).refresh_waves(self.model, self.palette, soaking)

    async def _theme_changed(self) -> None:
        await self.repaint()

    # ------------------------------------------------------------------ selection

    def selected_target(self) -> str | None:
        if self.selection and self.selection[0] == "target":
            return str(self.selection[1])
        return None

    def selected_wave(self) -> int | None:
        """The selected wave, the selected target's wave, or the current one."""
        return self._followed_wave()

    def _followed_wave(self) -> int | None:
        model = self.model
        if self.selection is not None:
            kind, key = self.selection
            if kind == "wave":
                return int(key)
            if kind == "target":
                target = model.targets.get(str(key))
                if target is not None and target.wave is not None:
                    return target.wave
            if kind == "channel":
                waves = model.waves_of(str(key))
                started = [w for w in waves if w.status != "pending"]
                if started or waves:
                    return (started or waves)[-1 if started else 0].number
        return model.current_wave or (min(model.waves) if model.waves else None)

    @on(Tree.NodeHighlighted, "#tree")
    def _highlighted(self, event: Tree.NodeHighlighted[NodeRef]) -> None:
        self.selection = event.node.data

    async def watch_selection(self) -> None:
        self.post_message(self.TargetSelected(self, self.selected_target()))
        await self._focus_panes(force=True)

    async def _focus_panes(self, *, force: bool = False) -> None:
        wave = self._followed_wave()
        target = self.selected_target()
        log = self.query_one(RolloutLog)
        if log.source != target:
            log.show(self.model, target, self.palette)
        metrics = self.query_one(MetricsPanel)
        if force or wave != self._shown_wave or target != metrics.target:
            self._shown_wave = wave
            await metrics.show(self.model, wave, target, self.palette)
        self.query_one(WaveProgress).mark(selected=wave, current=self.model.current_wave)

    # ------------------------------------------------------------------ filter

    def action_target_detail(self) -> None:
        # The tree's cursor, not ``selection``: a key may arrive before the highlight message.
        ref = self.query_one(EstateTree).selected_ref
        target = str(ref[1]) if ref is not None and ref[0] == "target" else None
        if target is None:
            self.notify("select a target in the tree to see its detail", severity="warning")
            return
        self.post_message(self.DetailRequested(self, target))

    def action_filter(self) -> None:
        box = self.query_one("#tree-filter", Input)
        box.display = True
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#tree-filter", Input)
        if not box.display:
            raise SkipAction()  # escape means something else here (leave the replay…)
        box.value = ""
        box.display = False
        self.query_one(EstateTree).focus()

    @on(Input.Changed, "#tree-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        tree = self.query_one(EstateTree)
        tree.filter_text = event.value
        tree.rebuild(self.model, self.palette)

    @on(Input.Submitted, "#tree-filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        box = self.query_one("#tree-filter", Input)
        box.display = bool(event.value)
        self.query_one(EstateTree).focus()
