"""Where each key of a TOML document stands: a map from key path to line number.

``tomllib`` gives values, not positions; validation messages must name ``FILE:LINE``. This scanner
reads the same text line by line and records the line of every table header and every key, with
array-of-tables entries indexed (``("channels", 1, "soak")``). It is deliberately forgiving: it is
only ever run on text ``tomllib`` has already accepted.
"""

from __future__ import annotations

import re
import tomllib

Path = tuple[str | int, ...]

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _split_key(text: str) -> tuple[list[str], str]:
    """Split a dotted key at the start of ``text``; return the parts and what follows."""
    parts: list[str] = []
    rest = text.lstrip()
    while rest:
        if rest[0] == "'":
            end = rest.find("'", 1)
            if end < 0:
                break
            parts.append(rest[1:end])
            rest = rest[end + 1 :].lstrip()
        elif rest[0] == '"':
            end = 1
            while end < len(rest) and rest[end] != '"':
                end += 2 if rest[end] == "\\" else 1
            if end >= len(rest):
                break
            parts.append(_basic_string(rest[: end + 1]))
            rest = rest[end + 1 :].lstrip()
        else:
            match = _BARE.match(rest)
            if not match:
                break
            parts.append(match.group(0))
            rest = rest[match.end() :].lstrip()
        if rest.startswith("."):
            rest = rest[1:].lstrip()
            continue
        break
    return parts, rest


def _basic_string(quoted: str) -> str:
    """The key a ``"quoted"`` basic string names: escapes (``\\n``, ``\\u00e9``) as tomllib reads them."""
    if "\\" not in quoted:
        return quoted[1:-1]
    try:
        return str(tomllib.loads(f"k = {quoted}")["k"])
    except tomllib.TOMLDecodeError:
        return quoted[1:-1]


def _depth_change(text: str) -> tuple[int, str | None]:
    """Net bracket depth change of a value's text, and an unterminated multi-line string opener."""
    depth = 0
    i = 0
    while i < len(text):
        char = text[i]
        if text.startswith(('"""', "'''"), i):
            delim = text[i : i + 3]
            end = text.find(delim, i + 3)
            if end < 0:
                return depth, delim
            i = end + 3
            continue
        if char in "\"'":
            end = i + 1
            while end < len(text) and text[end] != char:
                end += 2 if char == '"' and text[end] == "\\" else 1
            i = end + 1
            continue
        if char == "#":
            break
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        i += 1
    return depth, None


def key_lines(source: str) -> dict[Path, int]:
    """Map every table and key path in ``source`` to its 1-based line number."""
    lines: dict[Path, int] = {}
    table: Path = ()
    array_counts: dict[Path, int] = {}
    depth = 0
    open_string: str | None = None
    # Only "\n" ends a TOML line (tomllib counts the same way); str.splitlines() would also
    # split at form feeds and U+2028 inside strings and comments, shifting every later line.
    for number, raw in enumerate(source.split("\n"), start=1):
        if open_string:
            if open_string in raw:
                open_string = None
                depth += _depth_change(raw.split(open_string, 1)[-1])[0]
            continue
        if depth > 0:
            change, open_string = _depth_change(raw)
            depth += change
            continue
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("[["):
            parts, _ = _split_key(stripped[2:])
            # [[a.b]] after [[a]] belongs to a's latest entry: ("a", 0, "b", 0).
            base = (*_resolve(tuple(parts[:-1]), array_counts), *parts[-1:])
            index = array_counts.get(base, -1) + 1
            array_counts[base] = index
            table = (*base, index)
            for i in range(1, len(base) + 1):
                lines.setdefault(base[:i], number)
            lines[table] = number
            continue
        if stripped.startswith("["):
            parts, _ = _split_key(stripped[1:])
            table = _resolve(tuple(parts), array_counts)
            lines.setdefault(table, number)
            for i in range(1, len(table)):
                lines.setdefault(table[:i], number)
            continue
        parts, rest = _split_key(stripped)
        if not parts or not rest.startswith("="):
            continue
        path = (*table, *parts)
        for i in range(len(table) + 1, len(path) + 1):
            lines.setdefault(path[:i], number)
        value = rest[1:]
        if value.lstrip().startswith("{"):
            _inline_keys(value.lstrip(), path, number, lines)
        change, open_string = _depth_change(value)
        depth += change
    return lines


def _resolve(parts: Path, array_counts: dict[Path, int]) -> Path:
    """Turn ``[channels.sub]`` into ``("channels", <last index>, "sub")`` where channels is an array."""
    resolved: list[str | int] = []
    for part in parts:
        resolved.append(part)
        key = tuple(resolved)
        if key in array_counts:
            resolved.append(array_counts[key])
    return tuple(resolved)


def _inline_keys(text: str, path: Path, number: int, lines: dict[Path, int]) -> None:
    """Record the keys of a one-line inline table (``vars = { region = "x" }``)."""
    body = text[1:]
    while body:
        parts, rest = _split_key(body)
        if not parts or not rest.startswith("="):
            return
        lines.setdefault((*path, *parts), number)
        # Skip the value up to the next top-level comma.
        depth, i, quote = 0, 1, ""
        while i < len(rest):
            char = rest[i]
            if quote:
                if char == quote:
                    quote = ""
                elif char == "\\" and quote == '"':
                    i += 1  # an escaped character, perhaps the quote
            elif char in "\"'":
                quote = char
            elif char in "[{":
                depth += 1
            elif char in "]}":
                if depth == 0:
                    return
                depth -= 1
            elif char == "," and depth == 0:
                break
            i += 1
        body = rest[i + 1 :]
