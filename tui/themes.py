"""Themes as data: ``themes/*.toml`` → :class:`textual.theme.Theme`, with sluice's domain variables.

Each file names the theme, gives Textual's design-system colours under ``[colors]`` and the
console's own variables (``$wave-ok``, ``$gate-waiting``, …) under ``[variables]``. The console's
``.tcss`` and its coloured labels use only those variables, so a theme file is all it takes to
recolour everything.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from rich.style import Style
from textual.color import Color
from textual.theme import Theme

import sluice.themes as theme_files

#: Where the theme files live: the ``themes`` package (installed as package data).
THEME_DIR = Path(theme_files.__file__).resolve().parent
DEFAULT_THEME = "sluice-dark"
_COLOR_KEYS = (
    "primary",
    "secondary",
    "accent",
    "warning",
    "error",
    "success",
    "foreground",
    "background",
    "surface",
    "panel",
    "boost",
)


class ThemeError(Exception):
    """A theme file is unreadable or a requested theme does not exist."""


def load_theme(path: Path) -> Theme:
    """Read one theme file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ThemeError(f"{path}: {exc}") from None
    colors = data.get("colors", {})
    if "primary" not in colors:
        raise ThemeError(f"{path}: [colors] needs at least `primary`")
    theme = Theme(
        name=str(data.get("name") or path.stem),
        primary=str(colors["primary"]),
        dark=bool(data.get("dark", True)),
        luminosity_spread=float(data.get("luminosity_spread", 0.15)),
        variables={str(k): str(v) for k, v in data.get("variables", {}).items()},
    )
    for key in _COLOR_KEYS:
        if key in colors:
            setattr(theme, key, str(colors[key]))
    return theme


def load_themes(directory: Path = THEME_DIR) -> dict[str, Theme]:
    """Every theme in ``directory`` by name (the default one first)."""
    themes = [load_theme(p) for p in sorted(directory.glob("*.toml"))]
    themes.sort(key=lambda t: t.name != DEFAULT_THEME)
    return {t.name: t for t in themes}


def resolve_theme_name(name: str | None, available: dict[str, Theme]) -> str:
    """``--theme`` accepts the full name (``sluice-light``) or the short one (``light``).

    Raises:
        ThemeError: no such theme, with the names that exist.
    """
    if not name:
        return DEFAULT_THEME
    for candidate in (name, f"sluice-{name}"):
        if candidate in available:
            return candidate
    known = ", ".join(sorted(available))
    raise ThemeError(f"unknown theme {name!r} (available: {known})")


def variable_defaults(themes: dict[str, Theme]) -> dict[str, str]:
    """The default theme's domain variables: the fallback when a built-in Textual theme is used."""
    default = themes.get(DEFAULT_THEME)
    return dict(default.variables) if default else {}


class Palette:
    """Rich styles for the console's coloured labels, read from the active theme's variables."""

    def __init__(self, variables: dict[str, str]):
        self._variables = variables
        self._cache: dict[tuple[str, bool], Style] = {}

    def style(self, variable: str, *, bold: bool = False) -> Style:
        key = (variable, bold)
        if key not in self._cache:
            value = self._variables.get(variable)
            color = Color.parse(value).rich_color if value else None
            self._cache[key] = Style(color=color, bold=bold)
        return self._cache[key]
