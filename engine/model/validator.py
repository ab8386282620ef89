"""The estate validator: walks the raw TOML once, collecting every problem instead of stopping at
the first, and builds each section's parts (:mod:`sluice.engine.model.parts`).

A problem reads ``FILE:LINE: key.path: message`` (:class:`Problem`); :class:`EstateError` carries
them all. :func:`sluice.engine.model.estate.parse_estate` runs the sections in order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sluice.engine.model import schema
from sluice.engine.model.convert import convert, type_name
from sluice.engine.model.parts import (
    Channel,
    CheckSpec,
    ExecutorSpec,
    Module,
    Notifier,
    Regression,
    Target,
)
from sluice.engine.model.problems import EstateError, KeyPath, Problem, display, suggest
from sluice.engine.model.schema import Key
from sluice.engine.model.units import Share


class Validator:
    """Walks the raw TOML once, collecting problems instead of stopping at the first."""

    def __init__(self, raw: dict[str, Any], lines: Callable[[], dict[KeyPath, int]], path: Path):
        self.raw = raw
        self._lines = lines
        self._line_of: dict[KeyPath, int] | None = None
        self.path = path
        self.problems: list[Problem] = []

    @property
    def lines(self) -> dict[KeyPath, int]:
        """Each key path's line in the file: mapped at the first problem (a valid estate, the
        common case, is never mapped — ~15 ms of start-up for a 200-target file)."""
        if self._line_of is None:
            self._line_of = self._lines()
        return self._line_of

    def problem(self, key_path: KeyPath, message: str) -> None:
        line = 0
        lines = self.lines
        for end in range(len(key_path), -1, -1):
            if key_path[:end] in lines:
                line = lines[key_path[:end]]
                break
        self.problems.append(Problem(str(self.path), line, display(key_path), message))

    def table(self, raw: Any, keys: Mapping[str, Key], at: KeyPath) -> dict[str, Any]:
        """Validate one table against ``keys``; return converted values (defaults filled)."""
        if not isinstance(raw, dict):
            self.problem(at, f"expected a table, got {type_name(raw)}")
            return {name: key.default for name, key in keys.items()}
        values: dict[str, Any] = {}
        for name, value in raw.items():
            if name not in keys:
                self.problem((*at, name), f"unknown key{suggest(name, keys)}")
                continue
            try:
                values[name] = convert(keys[name], value)
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
            self.problem((name,), f"expected a table of named entries, got {type_name(value)}")
            return {}
        return value

    def meta(self) -> dict[str, Any]:
        """Unknown top-level tables, and the ``[estate]`` table's values."""
        for name in self.raw:
            if name not in schema.TOP_LEVEL:
                self.problem((name,), f"unknown table{suggest(name, schema.TOP_LEVEL)}")
        if "estate" in self.raw:
            return self.table(self.raw["estate"], schema.ESTATE_KEYS, ("estate",))
        # One problem, not a second "missing required key 'name'" for the absent table.
        self.problem((), "missing the [estate] table (name = ...)")
        return {name: key.default for name, key in schema.ESTATE_KEYS.items()}

    def history(self, location: str | None, url: str | None) -> Path:
        """The SQLite history's path (``~`` expanded, relative to the estate file)."""
        try:
            history = Path(url and ".sluice/history.db" or location or ".sluice/history.db")
            history = history.expanduser()
        except RuntimeError:  # "~nosuchuser/..."
            self.problem(("estate", "history"), f"cannot expand {location!r}: no such user")
        return history if history.is_absolute() else self.path.parent / history

    def raise_problems(self) -> None:
        """Raise every problem found, in file order (whatever order the sections ran in)."""
        if self.problems:
            raise EstateError(sorted(self.problems, key=lambda problem: problem.line))

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
                    f"{initial!r} is not one of versions{suggest(initial, versions)}",
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
                        (*at, "checks"), f"unknown check {check!r}{suggest(check, checks)}"
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
                    f"unknown channel {channel!r}{suggest(channel, channel_names)}",
                )
            if executor is not None and executor not in executors:
                self.problem(
                    (*at, "executor"),
                    f"unknown executor {executor!r}{suggest(executor, executors)}",
                )
            for module in values["modules"] or ():
                if module not in modules:
                    self.problem(
                        (*at, "modules"), f"unknown module {module!r}{suggest(module, modules)}"
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
                    f"unknown module {r['module']!r}{suggest(r['module'], modules)}",
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
                        f"unknown event {event!r}{suggest(event, schema.NOTIFY_EVENTS)}",
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
