"""The user's keys: ``~/.config/sluice/keys.toml``, binding id = key, validated like the estate file.

```toml
"rollout.pause" = "p"          # a binding id (the help screen lists them) and the key(s) for it
"rollout.advance" = "a,enter"  # several keys: comma-separated, Textual's key names
```

Every problem is one line ``FILE:LINE: "id": message`` (an unknown binding id, a key bound twice
on one screen, a value that is not a key). The console then opens with its default keys and
shows the problems; a good file is applied with ``App.set_keymap``, so the footer, the help
screen and the command palette all show the user's keys.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textual.binding import Binding

from sluice.engine.model.toml_lines import key_lines

#: A key name as Textual spells it (``p``, ``R``, ``space``, ``ctrl+p``, ``f5``) or one character.
_KEY = re.compile(r"^(?:[A-Za-z0-9_]+(?:\+[A-Za-z0-9_]+)*|[^\s,])$")
BindingList = Iterable[Binding | tuple[str, ...]]


def default_path() -> Path:
    """``$XDG_CONFIG_HOME/sluice/keys.toml`` (default ``~/.config/sluice/keys.toml``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "sluice" / "keys.toml"


@dataclass
class UserKeys:
    """What was read: the keymap to apply (empty if any problem) and the problems."""

    path: Path
    keymap: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _flatten(table: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """``rollout.pause = "p"`` (a dotted key) and ``"rollout.pause" = "p"`` both name one id."""
    flat: dict[tuple[str, ...], Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, (*prefix, key)))
        else:
            flat[(*prefix, key)] = value
    return flat


def _split_keys(value: str) -> list[str]:
    return [k.strip() for k in value.split(",")]


def read_keys(path: Path, scopes: Mapping[str, BindingList]) -> UserKeys:
    """Read and validate ``path`` (a missing file is no keys and no problem).

    Args:
        path: the keys file.
        scopes: each screen's bindings (its name → bindings): ids must be among them, and no
            key may be bound twice on one screen once the user's keys replace the defaults.
    """
    result = UserKeys(path)
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return result
    except (OSError, UnicodeDecodeError) as exc:
        result.problems.append(f"{path}: cannot read the keys file: {exc}")
        return result
    try:
        data = tomllib.loads(source)
    except tomllib.TOMLDecodeError as exc:
        at = re.search(r"line (\d+)", str(exc))
        where = f"{path}:{at.group(1)}" if at else str(path)
        result.problems.append(f"{where}: not valid TOML: {exc}")
        return result
    lines = key_lines(source)
    known = _known_ids(scopes)
    wanted: dict[str, tuple[str, int]] = {}  # id → (keys, line)
    for parts, value in _flatten(data).items():
        binding_id = ".".join(parts)
        line = lines.get(parts, 0)
        where = f"{path}:{line}" if line else str(path)
        if binding_id not in known:
            close = difflib.get_close_matches(binding_id, sorted(known), n=1)
            hint = (
                f" (did you mean {close[0]!r}?)"
                if close
                else " (the help screen, ?, lists the ids)"
            )
            result.problems.append(f'{where}: "{binding_id}": unknown binding id{hint}')
            continue
        if not isinstance(value, str) or not value.strip():
            result.problems.append(
                f'{where}: "{binding_id}": must be a key name like "p" or "ctrl+p"'
            )
            continue
        bad = [k for k in _split_keys(value) if not _KEY.match(k)]
        if bad:
            result.problems.append(f'{where}: "{binding_id}": {bad[0]!r} is not a key name')
            continue
        wanted[binding_id] = (",".join(_split_keys(value)), line)
    result.problems += _clashes(path, wanted, scopes)
    if not result.problems:
        result.keymap = {binding_id: keys for binding_id, (keys, _) in wanted.items()}
    return result


def _known_ids(scopes: Mapping[str, BindingList]) -> set[str]:
    return {
        b.id for bindings in scopes.values() for b in bindings if isinstance(b, Binding) and b.id
    }


def _clashes(
    path: Path, wanted: dict[str, tuple[str, int]], scopes: Mapping[str, BindingList]
) -> list[str]:
    """A key the user bound that another binding of the same screen also has."""
    from textual.keys import _normalize_key_list  # the keymap's own spelling of keys

    problems: list[str] = []
    reported: set[tuple[str, str]] = set()
    for scope, bindings in scopes.items():
        owners: dict[str, list[str]] = {}
        for b in bindings:
            if not isinstance(b, Binding) or not b.id:
                continue
            keys = wanted[b.id][0] if b.id in wanted else b.key
            for key in _normalize_key_list(keys).split(","):
                if b.id not in owners.setdefault(key, []):
                    owners[key].append(b.id)
        for key, ids in owners.items():
            mine = [i for i in ids if i in wanted]
            if len(ids) < 2 or not mine or (key, mine[0]) in reported:
                continue
            reported.add((key, mine[0]))
            line = wanted[mine[0]][1]
            others = ", ".join(f'"{i}"' for i in ids if i != mine[0])
            problems.append(
                f'{path}:{line}: "{mine[0]}": key {key!r} is bound twice on the {scope}: '
                f"also to {others}"
            )
    return problems
