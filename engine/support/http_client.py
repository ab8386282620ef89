"""What the HTTP check sources, the HTTP executor and the notifier share: TLS settings, one-line
error messages with secrets masked, dotted JSON paths.

Every request goes through the rollout's one ``aiohttp.ClientSession``
(:meth:`sluice.engine.support.resources.Resources.http`) with an explicit per-request timeout. aiohttp is imported
lazily so that ``sluice check`` never loads it.
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sluice.engine.model.template import redact
from sluice.engine.model.units import format_duration

#: Header names whose values are masked in anything shown or recorded, secret or not.
SENSITIVE_HEADER_WORDS = ("authorization", "token", "secret", "key", "cookie", "password")


class TlsSettings:
    """``ca`` / ``insecure`` of a check or executor, turned into aiohttp's ``ssl=`` argument.

    Verification is on by default (aiohttp's ``ssl=True``). ``ca`` (relative to the estate file)
    adds a CA bundle; ``insecure = true`` turns verification off, explicitly. The context is built
    once, lazily; a CA file that cannot be read is reported by :attr:`problem` on every use.
    """

    def __init__(self, settings: Mapping[str, Any], base_dir: Path):
        self.insecure = bool(settings.get("insecure"))
        ca = settings.get("ca")
        self.ca = (base_dir / Path(str(ca)).expanduser()) if ca else None
        self._context: ssl.SSLContext | None = None
        self.problem: str | None = None

    def option(self) -> ssl.SSLContext | bool:
        """The ``ssl=`` argument for aiohttp (check :attr:`problem` first)."""
        if self.insecure:
            return False
        if self.ca is None:
            return True
        if self._context is None and self.problem is None:
            try:
                self._context = ssl.create_default_context(cafile=str(self.ca))
            except (OSError, ssl.SSLError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                self.problem = f"cannot load the CA file {self.ca}: {reason}"
        return self._context if self._context is not None else True


def client_error(exc: BaseException, what: str, timeout: float, secrets: Iterable[str]) -> str:
    """One line saying why a request to ``what`` (a display URL) failed, secrets masked."""
    import aiohttp

    if isinstance(exc, TimeoutError):
        message = f"{what}: timed out after {format_duration(timeout)}"
    elif isinstance(exc, aiohttp.ClientConnectorCertificateError):
        message = f"{what}: TLS certificate not trusted ({exc.certificate_error})"
    elif isinstance(exc, aiohttp.ClientSSLError):
        message = f"{what}: TLS error ({exc})"
    elif isinstance(exc, aiohttp.ClientConnectorError):
        os_error = exc.os_error
        reason = os.strerror(os_error.errno) if os_error.errno and os_error.errno > 0 else ""
        reason = reason or os_error.strerror or str(os_error)
        message = f"{what}: cannot connect to {exc.host}:{exc.port}: {reason}"
    elif isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        message = f"{what}: not a valid http(s) URL"
    elif isinstance(exc, aiohttp.ServerDisconnectedError):
        message = f"{what}: the server closed the connection"
    elif isinstance(exc, aiohttp.ClientResponseError):
        message = f"{what}: HTTP {exc.status} {exc.message}"
    else:
        detail = str(exc) or type(exc).__name__
        message = f"{what}: {type(exc).__name__}: {detail}"
    return one_line(redact(message, secrets))


def one_line(text: str, limit: int = 300) -> str:
    """Collapse whitespace and cut ``text`` to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def body_snippet(raw: bytes, secrets: Iterable[str], limit: int = 200) -> str:
    """The start of a response body as one line, secrets masked (for error messages)."""
    return one_line(redact(raw[: limit * 4].decode("utf-8", "replace"), secrets), limit)


def parse_json(raw: bytes) -> Any:
    """Decode a JSON body; ``ValueError`` when it is not JSON. NaN/Infinity are accepted."""
    return json.loads(raw.decode("utf-8"))


MISSING = object()


def lookup(data: Any, path: str) -> Any:
    """The value at a dotted ``path`` (``checks.db.latency_ms``, ``items.0.id``), or MISSING.

    A leading ``$.`` (JSONPath style) is accepted; numeric parts index lists.
    """
    path = path.removeprefix("$.").removeprefix("$")
    value = data
    for part in path.split(".") if path else ():
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif (
            isinstance(value, list)
            and part.lstrip("-").isdigit()
            and -len(value) <= int(part) < len(value)
        ):
            value = value[int(part)]
        else:
            return MISSING
    return value


def header_secrets(headers: Mapping[str, str]) -> list[str]:
    """Values of sensitive-looking headers (``Authorization``, ``X-Api-Key``…), to mask."""
    secrets = []
    for name, value in headers.items():
        lowered = name.lower()
        if any(word in lowered for word in SENSITIVE_HEADER_WORDS):
            secrets.append(value)
            # "Bearer abc123": mask the credential even where it appears without its scheme.
            scheme, _, credential = value.partition(" ")
            if credential and scheme.isalpha():
                secrets.append(credential)
    return secrets
