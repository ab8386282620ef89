"""A TOML value made into a key's value (:class:`sluice.engine.model.schema.Key`), or the
user-facing reason it cannot be — one converter per key kind."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

from sluice.engine.model.schema import Key
from sluice.engine.model.units import (
    parse_duration,
    parse_duration_range,
    parse_increase,
    parse_share,
)


def convert(key: Key, value: Any) -> Any:
    """Convert a TOML value for ``key``; raise ``ValueError`` with the user-facing reason."""
    converter = _CONVERTERS.get(key.kind)
    if converter is None:
        raise AssertionError(f"unknown key kind {key.kind}")
    return converter(key, value)


def type_name(value: Any) -> str:
    """``a string``, ``an integer``, … — what a problem says the estate gave."""
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _string(key: Key, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type_name(value)}")
    return value


def _choice(key: Key, value: Any) -> str:
    if not isinstance(value, str) or value not in key.choices:
        raise ValueError(f"expected one of {', '.join(map(repr, key.choices))}, got {value!r}")
    return value


def _bool(key: Key, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {type_name(value)}")
    return value


def _number(key: Key, value: Any) -> int | float:
    """``int`` or ``float`` (an integer is a number too), within the key's bounds."""
    ok = isinstance(value, int) or (key.kind == "float" and isinstance(value, float))
    if isinstance(value, bool) or not ok:
        expected = "an integer" if key.kind == "int" else "a number"
        raise ValueError(f"expected {expected}, got {type_name(value)}")
    if value != value:
        raise ValueError("expected a number, got nan")
    if key.minimum is not None and value < key.minimum:
        raise ValueError(f"{value} is below the minimum {key.minimum:g}")
    if key.maximum is not None and value > key.maximum:
        raise ValueError(f"{value} is above the maximum {key.maximum:g}")
    return float(value) if key.kind == "float" else value


def _duration(key: Key, value: Any) -> Any:
    """``duration`` (``"30s"``) or ``range`` (``"1m..5m"``)."""
    if not isinstance(value, str):
        raise ValueError(f"expected a duration string like '30s', got {type_name(value)}")
    return parse_duration(value) if key.kind == "duration" else parse_duration_range(value)


def _str_list(key: Key, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of strings")
    return tuple(value)


def _share_list(key: Key, value: Any) -> tuple[Any, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(
            "expected a non-empty list of counts and percentages, e.g. [1, '25%', '100%']"
        )
    return tuple(parse_share(v, allow_zero=False) for v in value)


def _status_list(key: Key, value: Any) -> tuple[int, ...]:
    items = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(items, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and 100 <= v <= 599 for v in items
    ):
        raise ValueError("expected an HTTP status or a list of them")
    return tuple(items)


def _table(key: Key, value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError("expected a table of strings")
    return dict(value)


def _any_table(key: Key, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"expected a table, got {type_name(value)}")
    return value


def _any_list(key: Key, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list of tables, got {type_name(value)}")
    return value


def _datetime(key: Key, value: Any) -> datetime.date:
    if isinstance(value, datetime.date) and not isinstance(value, str):
        return value
    raise ValueError("expected a TOML datetime like 2026-12-20T00:00:00+01:00 (no quotes)")


def _regressions(key: Key, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError("expected [[simulation.regressions]] tables")
    return value


_CONVERTERS: dict[str, Callable[[Key, Any], Any]] = {
    "str": _string,
    "template": _string,
    "choice": _choice,
    "bool": _bool,
    "int": _number,
    "float": _number,
    "duration": _duration,
    "range": _duration,
    "share": lambda key, value: parse_share(value),
    "increase": lambda key, value: parse_increase(value),
    "str_list": _str_list,
    "share_list": _share_list,
    "status_list": _status_list,
    "table": _table,
    "any_table": _any_table,
    "any_list": _any_list,
    "datetime": _datetime,
    "regressions": _regressions,
}
