"""Themes as data, the command palette, and coalesced repaints."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from textual.message import Message
from tui_support import (
    MakeConsole,
    bindings_of,
    notifications,
    running,
    start_rollout,
    state_is,
    until,
)

from sluice.tui.commands import SluiceCommands
from sluice.tui.screens.console import ConsoleScreen
from sluice.tui.themes import DEFAULT_THEME, ThemeError, load_themes, resolve_theme_name
from sluice.tui.widgets.rollout_view import RolloutView

pytestmark = pytest.mark.timeout(60)
TUI = Path(__file__).resolve().parents[2] / "tui"


def test_three_themes_each_with_every_domain_variable() -> None:
    themes = load_themes()
    assert {"sluice-dark", "sluice-light", "sluice-high-contrast"} <= set(themes)
    assert next(iter(themes)) == DEFAULT_THEME
    wanted = set(themes[DEFAULT_THEME].variables)
    assert {"wave-ok", "wave-failed", "gate-waiting", "metric-fail"} <= wanted
    for theme in themes.values():
        assert set(theme.variables) == wanted, theme.name
    assert themes["sluice-light"].dark is False


def test_theme_names_short_and_long() -> None:
    themes = load_themes()
    assert resolve_theme_name(None, themes) == "sluice-dark"
    assert resolve_theme_name("light", themes) == "sluice-light"
    assert resolve_theme_name("sluice-high-contrast", themes) == "sluice-high-contrast"
    with pytest.raises(ThemeError, match="available: .*sluice-light"):
        resolve_theme_name("solarized", themes)


def test_stylesheet_uses_variables_only() -> None:
    css = (TUI / "sluice.tcss").read_text()
    values = re.findall(r":\s*([^;{}]+);", css)
    assert values
    for value in values:
        assert not re.search(r"#[0-9a-fA-F]{3,8}\b|rgb\(|hsl\(", value), value
    used = set(re.findall(r"\$([a-z0-9-]+)", css))
    domain = set(load_themes()[DEFAULT_THEME].variables)
    assert {"wave-ok", "wave-failed", "gate-failed", "metric-fail"} <= used
    assert used & domain


async def test_palette_lists_every_console_action_and_switches_theme(
    make_console: MakeConsole,
) -> None:
    console = make_console()
    async with running(console) as pilot:
        screen = console.app.screen
        assert isinstance(screen, ConsoleScreen)
        provider = SluiceCommands(screen)
        hits = [hit async for hit in provider.discover()]
        titles = [str(hit.text) for hit in hits]
        for binding in bindings_of(ConsoleScreen):
            assert any(t.endswith(f"({console.app.get_key_display(binding)})") for t in titles), (
                binding.id
            )
        theme = next(h for h in hits if str(h.text) == "Theme: light")
        theme.command()
        await pilot.pause()
        assert console.app.theme == "sluice-light"
        found = sorted([hit async for hit in provider.search("pause")], reverse=True)
        assert found and "Pause" in str(found[0].text)
        result = found[0].command()
        if inspect.isawaitable(result):
            await result
        await pilot.pause()
        assert any("no rollout is running" in n.message for n in notifications(console.app))


async def test_a_builtin_theme_works_too(make_console: MakeConsole) -> None:
    console = make_console()
    async with running(console) as pilot:
        console.app.theme = "textual-light"  # lacks sluice's variables: defaults fill in
        await pilot.pause()
        await start_rollout(pilot, console)
        await until(pilot, state_is(console, "halted"))


async def test_theme_flag_selects_the_theme(make_console: MakeConsole) -> None:
    console = make_console(theme="high-contrast")
    async with running(console):
        assert console.app.theme == "sluice-high-contrast"


async def test_repaints_are_coalesced(make_console: MakeConsole) -> None:
    """Hundreds of events, a handful of repaints: never one full refresh per event."""
    repaints = 0
    console = make_console()

    def hook(message: Message) -> None:
        nonlocal repaints
        if isinstance(message, RolloutView.Changed):
            repaints += 1

    async with console.app.run_test(size=(120, 40), message_hook=hook) as pilot:
        await pilot.pause()
        await start_rollout(pilot, console)
        await until(pilot, state_is(console, "halted"))
        events = len(console.driver.session.history.events(console.rollout.rollout_id))
    assert events > 200
    assert repaints < events / 5, (repaints, events)
