"""Safe substitution of ``{target}``, ``{vars.X}``, ``{env.X}``… into estate templates.

Two renderings matter. A *command* is run by a shell: every value is shell-quoted, and a secret
``{env.X}`` is never spliced in — it becomes a reference to the variable ``$X``, which is handed to
the process in its environment, so the command line (and so history, logs and ``ps``) never holds
the secret. A *text* (URL, header, JSON body) needs the real value; its ``display`` form, the only
one that is ever recorded or shown, masks every secret.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

#: Names a template may use, besides ``vars.*``, ``env.*`` and (HTTP polling) ``response.*``.
SIMPLE_NAMES = frozenset({"target", "module", "version", "previous_version", "channel"})
MASK = "••••••"

# A placeholder is an identifier path in braces. PromQL label matchers (`{env="x"}`) never match,
# because they hold an operator.
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)*)\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def placeholders(template: str) -> list[str]:
    """Every placeholder name used in ``template``, in order."""
    return [m.group(1) for m in PLACEHOLDER.finditer(template)]


def quoted_placeholders(command: str) -> list[str]:
    """Placeholders of a shell ``command`` template that sit inside shell quotes.

    A value is shell-quoted where the placeholder stands; inside ``"…"`` or ``'…'`` that
    quoting closes the user's quote instead, and ``$(…)`` in the value would run. So such a
    placeholder is an estate error (write it bare: ``--name={target}``). Quoting is followed
    as ``/bin/sh`` reads it: backslash escapes outside single quotes, ``'…'``, ``"…"``; a
    placeholder anywhere inside a double-quoted ``$(…)`` counts as quoted too (conservative).
    """
    found: list[str] = []
    quote = ""  # "", "'" or '"'
    index = 0
    while index < len(command):
        char = command[index]
        match = PLACEHOLDER.match(command, index) if char == "{" else None
        if match is not None:
            if quote:
                found.append(match.group(1))
            index = match.end()
            continue
        if quote == "'":
            quote = "" if char == "'" else quote
        elif char == "\\":
            index += 1  # the next character is escaped (outside quotes, or in "…")
        elif quote == '"':
            quote = "" if char == '"' else quote
        elif char in "'\"":
            quote = char
        index += 1
    return found


def placeholder_problem(name: str, *, allow_response: bool = False) -> str | None:
    """Why ``name`` can never be a valid placeholder, or None when it can."""
    head, _, rest = name.partition(".")
    if not rest:
        if name in SIMPLE_NAMES:
            return None
        if name in {"vars", "env", "response"}:
            return f"{{{name}}} needs a key, e.g. {{{name}.NAME}}"
        return f"unknown placeholder {{{name}}} (known: {', '.join(sorted(SIMPLE_NAMES))}, vars.X, env.X)"
    if head == "vars":
        return None
    if head == "env":
        return None if _ENV_NAME.match(rest) else f"{{{name}}}: not an environment variable name"
    if head == "response" and allow_response:
        return None
    return f"unknown placeholder {{{name}}}"


@dataclass(frozen=True)
class Context:
    """The values a template may use for one target's apply, rollback or check."""

    target: str
    channel: str
    module: str = ""
    version: str = ""
    previous_version: str = ""
    vars: Mapping[str, str] = field(default_factory=dict)
    response: Mapping[str, object] = field(default_factory=dict)

    def simple(self, name: str) -> str:
        return str(getattr(self, name))


class TemplateError(Exception):
    """A placeholder that has no value (a missing var or environment variable)."""


def _lookup_response(response: Mapping[str, object], path: str) -> str:
    value: object = response
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise TemplateError(f"{{response.{path}}}: the response has no such field")
    return str(value)


@dataclass(frozen=True)
class Rendered:
    """A rendered template: ``text`` to use, ``display`` to show or record, ``env`` for the process."""

    text: str
    display: str
    env: Mapping[str, str]


def render(
    template: str,
    ctx: Context,
    *,
    shell: bool = False,
    environ: Mapping[str, str] | None = None,
) -> Rendered:
    """Substitute every placeholder of ``template`` for ``ctx``.

    Args:
        template: the estate's template text.
        ctx: the values for this target.
        shell: quote for ``/bin/sh`` and pass secrets as environment variables.
        environ: where ``{env.X}`` comes from (default ``os.environ``).

    Raises:
        TemplateError: a ``{vars.X}`` the target lacks or an unset ``{env.X}``.
    """
    if "{" not in template:  # nothing to substitute (a host, a user): most renders of a run
        return Rendered(template, template, {})
    environ = os.environ if environ is None else environ
    secrets: dict[str, str] = {}
    text_parts: list[str] = []
    display_parts: list[str] = []
    pos = 0
    for match in PLACEHOLDER.finditer(template):
        literal = template[pos : match.start()]
        real, shown = _substitute(match.group(1), ctx, environ, secrets, shell)
        text_parts += (literal, real)
        display_parts += (literal, shown)
        pos = match.end()
    text_parts.append(template[pos:])
    display_parts.append(template[pos:])
    return Rendered("".join(text_parts), "".join(display_parts), secrets)


def _substitute(
    name: str, ctx: Context, environ: Mapping[str, str], secrets: dict[str, str], shell: bool
) -> tuple[str, str]:
    """What placeholder ``name`` becomes: (in the text used, in the text shown)."""
    if shell and name.startswith("env."):
        # The secret travels in the environment; the command only names it.
        _value(name, ctx, environ, secrets)
        ref = '"${' + name[4:] + '}"'
        return ref, ref
    real, shown = _value(name, ctx, environ, secrets)
    if shell:
        return shlex.quote(real), shlex.quote(shown)
    return real, shown


def _value(
    name: str, ctx: Context, environ: Mapping[str, str], secrets: dict[str, str]
) -> tuple[str, str]:
    """Placeholder ``name``'s (value, value shown); an ``{env.X}`` is masked and kept in ``secrets``."""
    head, _, rest = name.partition(".")
    if not rest:
        return ctx.simple(name), ctx.simple(name)
    if head == "vars":
        if rest not in ctx.vars:
            raise TemplateError(f"{{{name}}}: target {ctx.target!r} has no vars.{rest}")
        return str(ctx.vars[rest]), str(ctx.vars[rest])
    if head == "env":
        if rest not in environ:
            raise TemplateError(f"{{{name}}}: environment variable {rest} is not set")
        secrets[rest] = environ[rest]
        return environ[rest], MASK
    if head == "response":
        value = _lookup_response(ctx.response, rest)
        return value, value
    raise TemplateError(f"unknown placeholder {{{name}}}")


def redact(text: str, secrets: Iterable[str]) -> str:
    """Mask every occurrence of each (non-trivial) secret value in ``text``."""
    for secret in secrets:
        if len(secret) >= 3:
            text = text.replace(secret, MASK)
    return text
