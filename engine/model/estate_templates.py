"""An estate's templates, checked before anything runs.

Every placeholder of every template (executor settings, check queries, dashboards, notifier URLs
and headers) must be one sluice knows, even where no target uses the template yet; a
``{vars.X}`` must be set on each target that uses it; and a placeholder in a shell command must
not sit inside shell quotes (sluice quotes every value itself).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sluice.engine.model import schema
from sluice.engine.model.parts import Channel, CheckSpec, ExecutorSpec, Notifier, Target
from sluice.engine.model.problems import KeyPath
from sluice.engine.model.schema import Key
from sluice.engine.model.template import placeholder_problem, placeholders, quoted_placeholders
from sluice.engine.model.validator import Validator

#: Key kinds whose values are templates.
TEMPLATED = {"template", "table", "any_table"}


def check_templates(
    validator: Validator,
    targets: Mapping[str, Target],
    channels: tuple[Channel, ...],
    executors: Mapping[str, ExecutorSpec],
    checks: Mapping[str, CheckSpec],
    notify: tuple[Notifier, ...],
) -> None:
    """Every placeholder must be known, and every ``{vars.X}`` set on each target that uses it."""
    found = _Templates()
    for executor in executors.values():
        _shell_quotes(validator, executor)
        found.settings(executor, None)
    for check in checks.values():
        found.settings(check, None)
    for target in targets.values():
        found.used_by(target, channels, executors, checks)
    for index, notifier in enumerate(notify):
        found.collect(("notify", index, "url"), notifier.url, False, None)
        found.collect(("notify", index, "headers"), dict(notifier.headers), False, None)
    for at, (text, response) in found.texts.items():
        _check_placeholders(validator, at, text, response, found.users.get(at, []))


def _keys(spec: ExecutorSpec | CheckSpec) -> Mapping[str, Key]:
    if isinstance(spec, ExecutorSpec):
        return schema.EXECUTOR_KEYS.get(spec.kind, {})
    return schema.CHECK_KEYS.get(spec.source, {})


class _Templates:
    """The estate's template texts and, for each, the targets that use it."""

    def __init__(self) -> None:
        #: key path → (text, whether ``{response.X}`` may be used there)
        self.texts: dict[KeyPath, tuple[str, bool]] = {}
        self.users: dict[KeyPath, list[Target]] = {}

    def collect(self, at: KeyPath, value: Any, response: bool, target: Target | None) -> None:
        """Every string in ``value`` (nested tables and arrays too), used by ``target``."""
        if isinstance(value, str):
            self.texts[at] = (value, response)
            if target is not None:
                self.users.setdefault(at, []).append(target)
        elif isinstance(value, dict):
            for k, v in value.items():
                self.collect((*at, k), v, response, target)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self.collect((*at, i), v, response, target)

    def settings(self, spec: ExecutorSpec | CheckSpec, target: Target | None) -> None:
        """The templated settings of an executor or a check (an executor's may use responses)."""
        kind = "executors" if isinstance(spec, ExecutorSpec) else "checks"
        responses = kind == "executors"
        keys = _keys(spec)
        for name, value in spec.settings.items():
            key = keys.get(name)
            if key is not None and key.kind in TEMPLATED and value is not None:
                self.collect((kind, spec.name, name), value, responses and key.response, target)

    def used_by(
        self,
        target: Target,
        channels: tuple[Channel, ...],
        executors: Mapping[str, ExecutorSpec],
        checks: Mapping[str, CheckSpec],
    ) -> None:
        """The templates ``target`` renders: its executor's, its dashboard, its channel's checks."""
        executor = executors.get(target.executor)
        if executor is not None:
            self.settings(executor, target)
        if target.dashboard:
            self.collect(("targets", target.name, "dashboard"), target.dashboard, False, target)
        channel = next((c for c in channels if c.name == target.channel), None)
        for check_name in channel.checks if channel else ():
            check = checks.get(check_name)
            if check is not None:
                self.settings(check, target)


def _shell_quotes(validator: Validator, executor: ExecutorSpec) -> None:
    """A placeholder inside shell quotes would let its value out of its quoting."""
    keys = _keys(executor)
    for setting, command in executor.settings.items():
        key = keys.get(setting)
        if key is None or not key.shell or not isinstance(command, str):
            continue
        for name in dict.fromkeys(quoted_placeholders(command)):
            validator.problem(
                ("executors", executor.name, setting),
                f"{{{name}}} is inside shell quotes: write it bare (sluice shell-quotes every "
                "value itself; inside quotes a value could run as a command)",
            )


def _check_placeholders(
    validator: Validator, at: KeyPath, text: str, response: bool, users: list[Target]
) -> None:
    """Each placeholder of ``text`` once: known here, and its ``vars.X`` set on ``users``."""
    for name in dict.fromkeys(placeholders(text)):
        problem = placeholder_problem(name, allow_response=response)
        if problem:
            validator.problem(at, problem)
        elif name.startswith("vars.") and at[0] == "notify":
            validator.problem(at, f"{{{name}}}: notifications have no target, so no vars")
        elif name.startswith("vars."):
            var = name[5:]
            missing = sorted({t.name for t in users if var not in t.vars})
            if missing:
                shown = ", ".join(missing[:5]) + (
                    f" and {len(missing) - 5} more" if len(missing) > 5 else ""
                )
                validator.problem(
                    at, f"{{{name}}} cannot be resolved for target(s) {shown}: no vars.{var}"
                )
