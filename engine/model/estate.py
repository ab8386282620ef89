"""An estate file loaded: the typed, immutable :class:`Estate`, and :func:`load_estate` /
:func:`parse_estate`, which report every problem of a bad file in one pass.

The estate's parts are in :mod:`sluice.engine.model.parts`; the validator that builds them, one
section at a time, in :mod:`sluice.engine.model.validator`; the check of its templates in
:mod:`sluice.engine.model.estate_templates`. Other code imports the estate's names — the parts
and the errors too — from here (``__all__``): the modules behind it are its layout, not its API.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from sluice.engine.model.estate_templates import check_templates
from sluice.engine.model.parts import (
    Channel,
    CheckSpec,
    ExecutorSpec,
    Module,
    Notifier,
    Regression,
    Target,
)
from sluice.engine.model.problems import EstateError, Problem
from sluice.engine.model.template import Context
from sluice.engine.model.toml_lines import key_lines
from sluice.engine.model.validator import Validator
from sluice.engine.model.windows import Window, validate_windows

__all__ = [
    "Channel",
    "CheckSpec",
    "Estate",
    "EstateError",
    "ExecutorSpec",
    "Module",
    "Notifier",
    "Problem",
    "Regression",
    "Target",
    "is_history_url",
    "load_estate",
    "parse_estate",
]


@dataclass(frozen=True)
class Estate:
    """A validated estate file."""

    name: str
    path: Path
    history_path: Path
    channels: tuple[Channel, ...]
    targets: Mapping[str, Target] = field(hash=False)
    executors: Mapping[str, ExecutorSpec] = field(hash=False)
    checks: Mapping[str, CheckSpec] = field(hash=False)
    modules: Mapping[str, Module] = field(hash=False)
    seed: int = 0
    regressions: tuple[Regression, ...] = ()
    notify: tuple[Notifier, ...] = ()
    windows: tuple[Window, ...] = ()
    #: ``[estate] history`` when it is a ``postgresql://`` URL (``{env.X}`` not yet rendered).
    history_url: str | None = None

    @property
    def history(self) -> Path | str:
        """Where the history is: the SQLite file's path, or the PostgreSQL URL."""
        return self.history_url or self.history_path

    def channel(self, name: str) -> Channel:
        return next(c for c in self.channels if c.name == name)

    def context(self, target: str, module: str, version: str, previous_version: str) -> Context:
        """What templates of ``target`` see ({target}, {channel}, {vars.X}, …)."""
        spec = self.targets[target]
        return Context(
            target=target,
            channel=spec.channel,
            module=module,
            version=version,
            previous_version=previous_version,
            vars=spec.vars,
        )


def is_history_url(location: str) -> bool:
    """Whether ``[estate] history`` names a PostgreSQL server rather than a file."""
    return location.startswith(("postgresql://", "postgres://"))


def load_estate(path: str | Path) -> Estate:
    """Read and validate the estate file at ``path``.

    Raises:
        EstateError: every problem found, each with its line and key path.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise EstateError(
            [Problem(str(path), 0, "", f"cannot read the estate file: {reason}")]
        ) from None
    try:
        source = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EstateError([_undecodable(path, data, exc)]) from None
    return parse_estate(source, path)


def _undecodable(path: Path, data: bytes, exc: UnicodeDecodeError) -> Problem:
    """Where the first byte that is not UTF-8 is: its line, and its column in characters."""
    line_start = data.rfind(b"\n", 0, exc.start) + 1
    before = data[line_start : exc.start].decode("utf-8", errors="replace")
    return Problem(
        str(path),
        data.count(b"\n", 0, exc.start) + 1,
        "",
        f"cannot read the estate file: not valid UTF-8 (byte 0x{data[exc.start]:02x})",
        column=len(before) + 1,
    )


def parse_estate(source: str, path: Path) -> Estate:
    """Validate estate ``source`` text (read from ``path``) into an :class:`Estate`."""
    try:
        raw = tomllib.loads(source)
    except tomllib.TOMLDecodeError as exc:
        line, column, message = _syntax_error_position(exc, source)
        detail = f"TOML syntax error: {message}" + (f" (column {column})" if column else "")
        raise EstateError([Problem(str(path), line, "", detail)]) from None
    return _validate(Validator(raw, lambda: key_lines(source), path))


def _validate(v: Validator) -> Estate:
    """Every section in turn (each needs those before it), then the estate — or every problem."""
    meta = v.meta()
    modules = v.modules()
    executors = v.executors()
    checks = v.checks()
    channel_values = v.channel_values(checks)
    targets = v.targets(channel_values, executors, modules)
    channels = v.channels(channel_values, targets)
    seed, regressions = v.simulation(modules, channel_values)
    notify = v.notifiers()
    windows = validate_windows(v, v.raw.get("windows"), (c.name for c in channels))
    check_templates(v, targets, channels, executors, checks, notify)
    url = meta["history"] if is_history_url(meta["history"] or "") else None
    history = v.history(meta["history"], url)
    v.raise_problems()
    return Estate(
        name=meta["name"],
        path=v.path,
        history_path=history,
        channels=channels,
        targets=MappingProxyType(targets),
        executors=MappingProxyType(executors),
        checks=MappingProxyType(checks),
        modules=MappingProxyType(modules),
        seed=seed,
        regressions=regressions,
        notify=notify,
        windows=windows,
        history_url=url,
    )


_AT_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\Z")


def _syntax_error_position(exc: tomllib.TOMLDecodeError, source: str) -> tuple[int, int, str]:
    """Line, column and bare message of a TOML syntax error.

    Python 3.14 gives ``lineno``/``colno``/``msg``; before that they exist only inside the
    message text (``"Invalid value (at line 2, column 5)"``), which is what we parse there.
    """
    lineno = getattr(exc, "lineno", None)
    if lineno:
        return lineno, getattr(exc, "colno", 0) or 0, getattr(exc, "msg", str(exc))
    message = str(exc)
    match = _AT_POSITION.search(message)
    if match:
        return int(match.group(1)), int(match.group(2)), message[: match.start()]
    if message.endswith("(at end of document)"):
        return len(source.rstrip("\n").split("\n")), 0, message
    return 0, 0, message
