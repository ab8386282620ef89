"""The console's colour themes, as data: one ``*.toml`` per theme (see tui/themes.py).

A package only so the theme files install with sluice (package data), wherever it is installed.
"""
