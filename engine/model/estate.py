"""Load an estate file into a typed, immutable model, reporting every problem in one pass."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sluice.engine.model import schema
from sluice.engine.model.schema import Key
from sluice.engine.model.template import (
    Context,
    placeholder_problem,
    placeholders,
    quoted_placeholders,
)
from sluice.engine.model.toml_lines import key_lines
from sluice.engine.model.units import Share
from sluice.engine.model.windows import Window, validate_windows

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


@dataclass(frozen=True)
class Channel:
    """A release channel: its targets roll out together, wave by wave."""

    name: str
    index: int
    waves: tuple[Share, ...]
    max_parallel: int
    max_failures: Share
    soak: float
    gate: str
    on_failure: str
    checks: tuple[str, ...]
    targets: tuple[str, ...]
    review: str = "none"  # none | plans: a wave's plans are reviewed before its applies
    #: ``manual``: an approval before the channel's first wave (``gate`` is the one after a wave)
    entry: str = "auto"
    #: distinct people each manual approval of this channel (entry or gate) needs
    approvers: int = 1
    #: rear guard: seconds a passed wave's checks keep being sampled while later waves run
    watch_after: float = 0.0


@dataclass(frozen=True)
class Target:
    """One thing the change is applied to (an environment, cluster, account, host)."""

    name: str
    channel: str
    executor: str
    vars: Mapping[str, str] = field(hash=False)
    dashboard: str | None
    modules: tuple[str, ...] | None
    #: other names the target goes by in IaC addresses (normalised away in plan previews)
    aliases: tuple[str, ...] = ()

    def runs(self, module: str) -> bool:
        return self.modules is None or module in self.modules


@dataclass(frozen=True)
class ExecutorSpec:
    """How applies run: ``kind`` plus the kind's validated settings."""

    name: str
    kind: str
    settings: Mapping[str, Any] = field(hash=False)


@dataclass(frozen=True)
class CheckSpec:
    """A health check: where its value comes from and what counts as healthy."""

    name: str
    source: str
    max: float | None
    min: float | None
    max_increase: float | None
    interval: float
    failure_limit: int
    inconclusive_limit: int
    consecutive_error_limit: int
    baseline: str
    timeout: float
    settings: Mapping[str, Any] = field(hash=False)
    compare: str = "threshold"  # threshold | mann-whitney
    alpha: float = 0.05


@dataclass(frozen=True)
class Module:
    name: str
    versions: tuple[str, ...]
    initial: str


@dataclass(frozen=True)
class Regression:
    """Simulation: ``metric`` is ``factor`` times worse on ``module@version`` in ``channels``."""

    module: str
    version: str
    metric: str
    channels: tuple[str, ...]
    factor: float
    after: float = 0.0  # seconds after a target started running the version


@dataclass(frozen=True)
class Notifier:
    url: str
    format: str
    events: tuple[str, ...]
    headers: Mapping[str, str] = field(hash=False)
    timeout: float = 5.0
    retries: int = 3


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
    return _Validator(raw, key_lines(source), path).run()


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


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")


def _display(path: KeyPath) -> str:
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


def _suggest(word: str, choices: Any) -> str:
    import difflib  # only a bad estate needs suggestions

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Validator:
    """Walks the raw TOML once, collecting problems instead of stopping at the first."""

    def __init__(self, raw: dict[str, Any], lines: dict[KeyPath, int], path: Path):
        self.raw = raw
        self.lines = lines
        self.path = path
        self.problems: list[Problem] = []

    def problem(self, key_path: KeyPath, message: str) -> None:
        line = 0
        for end in range(len(key_path), -1, -1):
            if key_path[:end] in self.lines:
                line = self.lines[key_path[:end]]
                break
        self.problems.append(Problem(str(self.path), line, _display(key_path), message))

    def table(self, raw: Any, keys: Mapping[str, Key], at: KeyPath) -> dict[str, Any]:
        """Validate one table against ``keys``; return converted values (defaults filled)."""
        if not isinstance(raw, dict):
            self.problem(at, f"expected a table, got {schema._type_name(raw)}")
            return {name: key.default for name, key in keys.items()}
        values: dict[str, Any] = {}
        for name, value in raw.items():
            if name not in keys:
                self.problem((*at, name), f"unknown key{_suggest(name, keys)}")
                continue
            try:
                values[name] = schema.convert(keys[name], value)
            except ValueError as exc:
                self.problem((*at, name), str(exc))
        for name, key in keys.items():
            if name in values:
                continue
            if key.required and name not in raw:
                self.problem(at, f"missing required key {name!r}")
            values[name] = key.default
        return values

    def section(self, name: str) -> dict[str, Any]:
        value = self.raw.get(name, {})
        if not isinstance(value, dict):
            self.problem(
                (name,), f"expected a table of named entries, got {schema._type_name(value)}"
            )
            return {}
        return value

    def run(self) -> Estate:
        for name in self.raw:
            if name not in schema.TOP_LEVEL:
                self.problem((name,), f"unknown table{_suggest(name, schema.TOP_LEVEL)}")
        if "estate" in self.raw:
            meta = self.table(self.raw["estate"], schema.ESTATE_KEYS, ("estate",))
        else:
            # One problem, not a second "missing required key 'name'" for the absent table.
            self.problem((), "missing the [estate] table (name = ...)")
            meta = {name: key.default for name, key in schema.ESTATE_KEYS.items()}
        modules = self.modules()
        executors = self.executors()
        checks = self.checks()
        channel_values = self.channel_values(checks)
        targets = self.targets(channel_values, executors, modules)
        channels = self.channels(channel_values, targets)
        seed, regressions = self.simulation(modules, channel_values)
        notify = self.notifiers()
        windows = validate_windows(self, self.raw.get("windows"), (c.name for c in channels))
        self.templates(targets, channels, executors, checks, notify)
        url = meta["history"] if is_history_url(meta["history"] or "") else None
        try:
            history = Path(url and ".sluice/history.db" or meta["history"] or ".sluice/history.db")
            history = history.expanduser()
        except RuntimeError:  # "~nosuchuser/..."
            self.problem(("estate", "history"), f"cannot expand {meta['history']!r}: no such user")
        if self.problems:
            # Reported in file order, whatever order the sections were validated in.
            raise EstateError(sorted(self.problems, key=lambda problem: problem.line))
        return Estate(
            name=meta["name"],
            path=self.path,
            history_path=history if history.is_absolute() else self.path.parent / history,
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

    def modules(self) -> dict[str, Module]:
        modules: dict[str, Module] = {}
        for name, raw in self.section("modules").items():
            at: KeyPath = ("modules", name)
            values = self.table(raw, schema.MODULE_KEYS, at)
            versions = values["versions"] or ()
            if "versions" in values and values["versions"] is not None and not versions:
                self.problem((*at, "versions"), "needs at least one version")
            for version in {v for v in versions if versions.count(v) > 1}:
                self.problem((*at, "versions"), f"duplicate version {version!r}")
            initial = values["initial"]
            if initial is not None and versions and initial not in versions:
                self.problem(
                    (*at, "initial"),
                    f"{initial!r} is not one of versions{_suggest(initial, versions)}",
                )
            modules[name] = Module(name, tuple(versions), initial or "")
        if not modules:
            self.problem(("modules",), "the estate defines no [modules.NAME]")
        return modules

    def executors(self) -> dict[str, ExecutorSpec]:
        executors: dict[str, ExecutorSpec] = {}
        for name, raw in self.section("executors").items():
            at: KeyPath = ("executors", name)
            kind = raw.get("kind") if isinstance(raw, dict) else None
            keys = schema.EXECUTOR_KEYS.get(kind) if isinstance(kind, str) else None
            if keys is None:
                keys = {"kind": schema.EXECUTOR_KEYS["local"]["kind"]}
                raw = (
                    {k: v for k, v in raw.items() if k == "kind"} if isinstance(raw, dict) else raw
                )
            values = self.table(raw, keys, at)
            self.executor_pairs(values, at)
            executors[name] = ExecutorSpec(name, values["kind"] or "", MappingProxyType(values))
        return executors

    def executor_pairs(self, values: dict[str, Any], at: KeyPath) -> None:
        """Keys that only make sense together (caught here, not at the first apply)."""
        if values.get("kind") == "http":
            if values.get("poll_url") and not values.get("poll_field"):
                self.problem(
                    (*at, "poll_url"), "poll_url needs poll_field (the JSON field to watch)"
                )
            if values.get("poll_field") and not values.get("poll_url"):
                self.problem((*at, "poll_field"), "poll_field needs poll_url")

    def checks(self) -> dict[str, CheckSpec]:
        checks: dict[str, CheckSpec] = {}
        for name, raw in self.section("checks").items():
            at: KeyPath = ("checks", name)
            source = raw.get("source") if isinstance(raw, dict) else None
            keys = schema.CHECK_KEYS.get(source) if isinstance(source, str) else None
            if keys is None:
                keys = {"source": schema.CHECK_KEYS["simulated"]["source"]}
                raw = (
                    {k: v for k, v in raw.items() if k == "source"}
                    if isinstance(raw, dict)
                    else raw
                )
            v = self.table(raw, keys, at)
            if v.get("token") and v.get("username"):
                self.problem(
                    (*at, "token"), "set either token (bearer) or username/password, not both"
                )
            if v.get("max") is not None and v.get("min") is not None and v["min"] > v["max"]:
                self.problem((*at, "min"), f"min {v['min']:g} is above max {v['max']:g}")
            checks[name] = CheckSpec(
                name=name,
                source=v["source"] or "",
                max=v.get("max"),
                min=v.get("min"),
                max_increase=v.get("max_increase"),
                interval=v.get("interval") or 10.0,
                failure_limit=v.get("failure_limit") or 0,
                inconclusive_limit=v.get("inconclusive_limit") or 0,
                consecutive_error_limit=v.get("consecutive_error_limit", 4) or 0,
                baseline=v.get("baseline") or "self",
                timeout=v.get("timeout") or 10.0,
                settings=MappingProxyType(v),
                compare=v.get("compare") or "threshold",
                alpha=v.get("alpha") or 0.05,
            )
            if v.get("alpha") is not None and v["alpha"] <= 0:
                self.problem((*at, "alpha"), "alpha must be above 0 (e.g. 0.05)")
        return checks

    def channel_values(self, checks: Mapping[str, CheckSpec]) -> list[dict[str, Any]]:
        raw_channels = self.raw.get("channels", [])
        if not isinstance(raw_channels, list):
            self.problem(("channels",), "expected [[channels]] tables")
            return []
        if not raw_channels:
            self.problem(("channels",), "the estate defines no [[channels]]")
        result: list[dict[str, Any]] = []
        seen: dict[str, int] = {}
        for index, raw in enumerate(raw_channels):
            at: KeyPath = ("channels", index)
            values = self.table(raw, schema.CHANNEL_KEYS, at)
            name = values["name"]
            if name in seen:
                self.problem(
                    (*at, "name"), f"duplicate channel name {name!r} (also channels[{seen[name]}])"
                )
            elif name:
                seen[name] = index
            for check in values["checks"] or ():
                if check not in checks:
                    self.problem(
                        (*at, "checks"), f"unknown check {check!r}{_suggest(check, checks)}"
                    )
            values["index"] = index
            result.append(values)
        return result

    def targets(
        self,
        channels: list[dict[str, Any]],
        executors: Mapping[str, ExecutorSpec],
        modules: Mapping[str, Module],
    ) -> dict[str, Target]:
        channel_names = [c["name"] for c in channels if c["name"]]
        targets: dict[str, Target] = {}
        for name, raw in self.section("targets").items():
            at: KeyPath = ("targets", name)
            values = self.table(raw, schema.TARGET_KEYS, at)
            channel, executor = values["channel"], values["executor"]
            if channel is not None and channel not in channel_names:
                self.problem(
                    (*at, "channel"),
                    f"unknown channel {channel!r}{_suggest(channel, channel_names)}",
                )
            if executor is not None and executor not in executors:
                self.problem(
                    (*at, "executor"),
                    f"unknown executor {executor!r}{_suggest(executor, executors)}",
                )
            for module in values["modules"] or ():
                if module not in modules:
                    self.problem(
                        (*at, "modules"), f"unknown module {module!r}{_suggest(module, modules)}"
                    )
            target_vars: dict[str, str] = {}
            for var, value in (values["vars"] or {}).items():
                if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                    target_vars[var] = str(value)
                else:
                    self.problem((*at, "vars", var), "expected a string or a number")
            targets[name] = Target(
                name=name,
                channel=channel or "",
                executor=executor or "",
                vars=MappingProxyType(target_vars),
                dashboard=values["dashboard"],
                modules=values["modules"],
                aliases=values["aliases"] or (),
            )
        if not targets:
            self.problem(("targets",), "the estate defines no [targets.NAME]")
        return targets

    def channels(
        self, values: list[dict[str, Any]], targets: Mapping[str, Target]
    ) -> tuple[Channel, ...]:
        channels: list[Channel] = []
        for v in values:
            at: KeyPath = ("channels", v["index"])
            members = tuple(t.name for t in targets.values() if t.channel == v["name"])
            if v["name"] and not members and targets:
                self.problem(at, f"channel {v['name']!r} has no targets")
            waves = v["waves"] or (Share(100, percent=True),)
            self.check_waves(waves, len(members), (*at, "waves"))
            channels.append(
                Channel(
                    name=v["name"] or "",
                    index=v["index"],
                    waves=waves,
                    max_parallel=v["max_parallel"] or 1,
                    max_failures=v["max_failures"] or Share(0, percent=False),
                    soak=v["soak"] or 0.0,
                    gate=v["gate"] or "auto",
                    on_failure=v["on_failure"] or "halt",
                    checks=v["checks"] or (),
                    targets=members,
                    review=v["review"] or "none",
                    entry=v["entry"] or "auto",
                    approvers=v["approvers"] or 1,
                    watch_after=v.get("watch_after") or 0.0,
                )
            )
        return tuple(channels)

    def check_waves(self, waves: tuple[Share, ...], size: int, at: KeyPath) -> None:
        last_count = last_percent = 0.0
        for wave in waves:
            if wave.percent:
                if wave.value <= last_percent:
                    self.problem(at, f"waves must increase: {wave} after {last_percent:g}%")
                last_percent = wave.value
            else:
                if wave.value <= last_count:
                    self.problem(at, f"waves must increase: {wave} after {last_count:g}")
                if size and wave.value > size:
                    self.problem(at, f"wave of {wave} exceeds the channel's {size} target(s)")
                last_count = wave.value

    def simulation(
        self, modules: Mapping[str, Module], channels: list[dict[str, Any]]
    ) -> tuple[int, tuple[Regression, ...]]:
        at: KeyPath = ("simulation",)
        values = self.table(self.raw.get("simulation", {}), schema.SIMULATION_KEYS, at)
        regressions = []
        channel_names = {c["name"] for c in channels}
        for index, raw in enumerate(values["regressions"] or ()):
            r_at: KeyPath = (*at, "regressions", index)
            r = self.table(raw, schema.REGRESSION_KEYS, r_at)
            module = modules.get(r["module"] or "")
            if r["module"] and module is None:
                self.problem(
                    (*r_at, "module"),
                    f"unknown module {r['module']!r}{_suggest(r['module'], modules)}",
                )
            elif module and r["version"] and r["version"] not in module.versions:
                self.problem(
                    (*r_at, "version"), f"{r['version']!r} is not a version of {module.name}"
                )
            for channel in r["channels"] or ():
                if channel not in channel_names:
                    self.problem((*r_at, "channels"), f"unknown channel {channel!r}")
            regressions.append(
                Regression(
                    r["module"] or "",
                    r["version"] or "",
                    r["metric"] or "",
                    r["channels"] or (),
                    r["factor"] or 0.0,
                    r.get("after") or 0.0,
                )
            )
        return values["seed"] or 0, tuple(regressions)

    def notifiers(self) -> tuple[Notifier, ...]:
        raw_list = self.raw.get("notify", [])
        if not isinstance(raw_list, list):
            self.problem(("notify",), "expected [[notify]] tables")
            return ()
        result = []
        for index, raw in enumerate(raw_list):
            at: KeyPath = ("notify", index)
            v = self.table(raw, schema.NOTIFY_KEYS, at)
            for event in v["events"] or ():
                if event not in schema.NOTIFY_EVENTS:
                    self.problem(
                        (*at, "events"),
                        f"unknown event {event!r}{_suggest(event, schema.NOTIFY_EVENTS)}",
                    )
            result.append(
                Notifier(
                    v["url"] or "",
                    v["format"],
                    v["events"] or (),
                    MappingProxyType(v["headers"] or {}),
                    v["timeout"],
                    v["retries"],
                )
            )
        return tuple(result)

    def shell_quotes(self, at: KeyPath, command: str) -> None:
        """A placeholder inside shell quotes would let its value out of its quoting."""
        for name in dict.fromkeys(quoted_placeholders(command)):
            self.problem(
                at,
                f"{{{name}}} is inside shell quotes: write it bare (sluice shell-quotes every "
                "value itself; inside quotes a value could run as a command)",
            )

    def templates(
        self,
        targets: Mapping[str, Target],
        channels: tuple[Channel, ...],
        executors: Mapping[str, ExecutorSpec],
        checks: Mapping[str, CheckSpec],
        notify: tuple[Notifier, ...],
    ) -> None:
        """Every placeholder must be known, and every ``{vars.X}`` set on each target that uses it."""
        users: dict[KeyPath, list[Target]] = {}
        texts: dict[KeyPath, tuple[str, bool]] = {}

        def collect(at: KeyPath, value: Any, response: bool, target: Target | None) -> None:
            if isinstance(value, str):
                texts[at] = (value, response)
                if target is not None:
                    users.setdefault(at, []).append(target)
            elif isinstance(value, dict):
                for k, v in value.items():
                    collect((*at, k), v, response, target)
            elif isinstance(value, list):
                for i, v in enumerate(value):
                    collect((*at, i), v, response, target)

        templated = {"template", "table", "any_table"}
        # Every template is checked for unknown placeholders, even where no target uses it yet.
        for executor_spec in executors.values():
            keys = schema.EXECUTOR_KEYS.get(executor_spec.kind, {})
            for name, value in executor_spec.settings.items():
                key = keys.get(name)
                if key is not None and key.shell and isinstance(value, str):
                    self.shell_quotes(("executors", executor_spec.name, name), value)
                if key is not None and key.kind in templated and value is not None:
                    collect(("executors", executor_spec.name, name), value, key.response, None)
        for check_spec in checks.values():
            keys = schema.CHECK_KEYS.get(check_spec.source, {})
            for name, value in check_spec.settings.items():
                key = keys.get(name)
                if key is not None and key.kind in templated and value is not None:
                    collect(("checks", check_spec.name, name), value, False, None)
        for target in targets.values():
            executor = executors.get(target.executor)
            if executor is not None:
                keys = schema.EXECUTOR_KEYS.get(executor.kind, {})
                for name, value in executor.settings.items():
                    key = keys.get(name)
                    if key is not None and key.kind in templated and value is not None:
                        collect(("executors", executor.name, name), value, key.response, target)
            if target.dashboard:
                collect(("targets", target.name, "dashboard"), target.dashboard, False, target)
            channel = next((c for c in channels if c.name == target.channel), None)
            for check_name in channel.checks if channel else ():
                check = checks.get(check_name)
                if check is None:
                    continue
                keys = schema.CHECK_KEYS.get(check.source, {})
                for name, value in check.settings.items():
                    key = keys.get(name)
                    if key is not None and key.kind in templated and value is not None:
                        collect(("checks", check.name, name), value, False, target)
        for index, notifier in enumerate(notify):
            collect(("notify", index, "url"), notifier.url, False, None)
            collect(("notify", index, "headers"), dict(notifier.headers), False, None)

        for at, (text, response) in texts.items():
            reported: set[str] = set()
            for name in placeholders(text):
                if name in reported:
                    continue
                reported.add(name)
                problem = placeholder_problem(name, allow_response=response)
                if problem:
                    self.problem(at, problem)
                    continue
                if not name.startswith("vars."):
                    continue
                if at[0] == "notify":
                    self.problem(at, f"{{{name}}}: notifications have no target, so no vars")
                    continue
                var = name[5:]
                missing = sorted({t.name for t in users.get(at, []) if var not in t.vars})
                if missing:
                    shown = ", ".join(missing[:5]) + (
                        f" and {len(missing) - 5} more" if len(missing) > 5 else ""
                    )
                    self.problem(
                        at, f"{{{name}}} cannot be resolved for target(s) {shown}: no vars.{var}"
                    )
