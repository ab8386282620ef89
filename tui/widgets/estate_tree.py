"""The estate tree: channels → waves → targets, each with its status glyph, version and apply time."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from sluice.engine.model.units import format_duration
from sluice.tui.glyphs import counts_text, target_glyph, wave_glyph
from sluice.tui.model import ConsoleModel, TargetView, WaveView
from sluice.tui.themes import Palette

#: What a node stands for: ("channel", name), ("wave", number) or ("target", name).
NodeRef = tuple[str, str | int]
NAME_WIDTH = 17


#: Keys the screens own: space (pause / play), ← and → (replay seek), enter (a target's detail).
#: Tree binds them to toggle and scroll, and even a binding that skips itself would hide the
#: screen's from the footer.
SCREEN_KEYS = {"space", "left", "right", "enter"}


def _tree_bindings_without_screen_keys() -> list[Binding | tuple[str, str] | tuple[str, str, str]]:
    merged = Tree._merge_bindings()
    return [
        b for key, group in merged.key_to_bindings.items() if key not in SCREEN_KEYS for b in group
    ]


class EstateTree(Tree[NodeRef], inherit_bindings=False):
    """Rebuilt when the plan changes; afterwards only the nodes whose state changed are relabelled."""

    BINDINGS = _tree_bindings_without_screen_keys()

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("estate", id=id)
        self.show_root = False
        self.guide_depth = 2
        self.filter_text = ""
        self._by_ref: dict[NodeRef, TreeNode[NodeRef]] = {}
        self._model: ConsoleModel | None = None
        self._palette: Palette | None = None

    @property
    def selected_ref(self) -> NodeRef | None:
        node = self.cursor_node
        return node.data if node is not None else None

    def rebuild(self, model: ConsoleModel, palette: Palette) -> None:
        """Build the whole tree from ``model`` (new plan, new filter, new theme)."""
        self._model, self._palette = model, palette
        keep = self.selected_ref
        self.clear()
        self._by_ref = {}
        needle = self.filter_text.lower()
        for channel in model.channels():
            everyone = model.targets_of_channel(channel)
            channel_hit = bool(needle) and needle in channel.lower()

            def shown(name: str, channel_hit: bool = channel_hit) -> bool:
                return channel_hit or not needle or needle in name.lower()

            members = [t for t in everyone if shown(t.name)]
            if not members:
                continue
            node = self.root.add(self._channel_label(channel), data=("channel", channel))
            self._by_ref[("channel", channel)] = node
            waves = model.waves_of(channel)
            if waves:
                for wave in waves:
                    names = [n for n in wave.targets if shown(n)]
                    if needle and not names:
                        continue
                    wave_node = node.add(self._wave_label(wave), data=("wave", wave.number))
                    self._by_ref[("wave", wave.number)] = wave_node
                    for name in names:
                        self._add_target(wave_node, model.targets[name])
                    wave_node.expand()
            else:
                for target in members:
                    self._add_target(node, target)
            node.expand()
        if keep in self._by_ref:
            self.move_cursor(self._by_ref[keep])

    def _add_target(self, parent: TreeNode[NodeRef], target: TargetView) -> None:
        ref: NodeRef = ("target", target.name)
        self._by_ref[ref] = parent.add_leaf(self._target_label(target), data=ref)

    def refresh_targets(self, names: set[str]) -> None:
        """Relabel the targets in ``names`` and their waves and channels."""
        if self._model is None:
            return
        waves: set[int] = set()
        channels: set[str] = set()
        for name in names:
            target = self._model.targets.get(name)
            node = self._by_ref.get(("target", name))
            if target is None or node is None:
                continue
            node.set_label(self._target_label(target))
            if target.wave is not None:
                waves.add(target.wave)
            channels.add(target.channel)
        self.refresh_waves(waves, channels)

    def refresh_waves(self, numbers: set[int], channels: set[str] | None = None) -> None:
        if self._model is None:
            return
        channels = set(channels or ())
        for number in numbers:
            wave = self._model.waves.get(number)
            node = self._by_ref.get(("wave", number))
            if wave is not None:
                channels.add(wave.channel)
                if node is not None:
                    node.set_label(self._wave_label(wave))
        for channel in channels:
            node = self._by_ref.get(("channel", channel))
            if node is not None:
                node.set_label(self._channel_label(channel))

    # ------------------------------------------------------------------ labels

    def _channel_label(self, channel: str) -> Text:
        assert self._model is not None and self._palette is not None
        label = self._palette_text(channel, "bold")
        label.append("  ")
        label.append_text(counts_text(self._model.channel_counts(channel), self._palette))
        return label

    def _wave_label(self, wave: WaveView) -> Text:
        assert self._model is not None and self._palette is not None
        glyph, variable, word = wave_glyph(wave.status)
        counts = self._model.counts(wave)
        done = sum(counts.get(s, 0) for s in ("ok", "noop", "rolled_back"))
        label = self._palette_text(f"{glyph} ", variable)
        label.append(f"W{wave.number} {wave.name}  ")
        label.append(f"{done}/{len(wave.targets)}", self._palette.style(variable))
        if wave.status not in ("pending", "applying", "passed", "approved"):
            label.append(f" {word}", self._palette.style(variable))
        return label

    def _target_label(self, target: TargetView) -> Text:
        assert self._palette is not None
        glyph, variable = target_glyph(target.status)
        label = self._palette_text(f"{glyph} ", variable)
        name = target.name
        if len(name) > NAME_WIDTH:
            name = name[: NAME_WIDTH - 1] + "…"
        label.append(f"{name:<{NAME_WIDTH}} ")
        label.append(f"{target.version:<7}", self._palette.style("log-muted"))
        if target.duration is not None and target.status not in ("applying", "rolling_back"):
            label.append(
                f" {format_duration(target.duration):>5}", self._palette.style("log-muted")
            )
        if target.progress and target.status in ("applying", "rolling_back"):
            label.append(f" {target.progress}", self._palette.style("log-muted"))
        if target.drift:  # the last `sluice drift` found this target not in sync
            label.append(f" ≠ {target.drift}", self._palette.style("wave-failed"))
        return label

    def _palette_text(self, text: str, variable: str) -> Text:
        assert self._palette is not None
        if variable == "bold":
            return Text(text, style="bold")
        return Text(text, style=self._palette.style(variable))
