"""What is wrong with an estate file: each :class:`Problem` located as ``FILE:LINE: key.path``,
all of them in one :class:`EstateError` (exit code 2)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

#: Where a value is in the estate file: ``("targets", "db.primary", "vars")``, ``("channels", 0)``.
KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an estate file, located by line and key path."""

    file: str
    line: int
    key: str
    message: str
    column: int = 0

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        where += f":{self.column}" if self.line and self.column else ""
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class EstateError(Exception):
    """The estate file is invalid; ``problems`` lists every reason."""

    def __init__(self, problems: list[Problem]):
        super().__init__("\n".join(map(str, problems)))
        self.problems = problems


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")


def display(path: KeyPath) -> str:
    """``("targets", "db.primary", "vars")`` → ``targets."db.primary".vars``, as TOML writes it."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            # Quoted like a TOML key, so a dot or a newline in a name cannot break the message.
            shown = part if _BARE_KEY.match(part) else json.dumps(part, ensure_ascii=False)
            text += ("." if text else "") + shown
    return text


def suggest(word: str, choices: Any) -> str:
    """`` (did you mean 'x'?)`` when a known name is close to ``word``, else nothing."""
    import difflib  # only a bad estate needs suggestions

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
