"""An HTTP probe: request a templated URL and read health from the answer.

What the reading is:

* **value** — the number at ``json_path`` in the JSON body when ``json_path`` is set (the gate
  compares it with ``max``/``min``/``max_increase``); otherwise the response latency in seconds
  (so ``max = 0.3`` is an alternative to ``max_latency = "300ms"``, and sparklines show latency).
* **a breach** — a status other than ``expect_status``, or a latency above ``max_latency``:
  ``Reading(breach="HTTP 503 Service Unavailable, expected 200")``, which the gate counts as a
  *fail*, never a pass (its value is ``None``; the reason says what was seen).
* **no data** — ``json_path`` absent from the body, ``null``, NaN or ±Inf.
* **an error** — the probe itself could not be made or read: connection refused, timeout, TLS
  failure, a body that is not JSON when ``json_path`` needs one, a non-numeric value at
  ``json_path``.

The latency is measured from sending the request to having read the whole body.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sluice.engine.checks.base import Reading
from sluice.engine.model.template import Context, TemplateError, render
from sluice.engine.model.units import format_duration
from sluice.engine.support.http_client import (
    MISSING,
    TlsSettings,
    client_error,
    header_secrets,
    lookup,
    parse_json,
)

if TYPE_CHECKING:
    from sluice.engine.model.estate import CheckSpec, Estate
    from sluice.engine.support.clock import Clock
    from sluice.engine.support.resources import Resources


class HttpCheck:
    """A check whose value comes from one HTTP request per target and measurement."""

    def __init__(self, spec: CheckSpec, estate: Estate, clock: Clock, resources: Resources):
        self.spec = spec
        self.resources = resources
        settings = spec.settings
        self.url = str(settings["url"])
        self.method = str(settings.get("method") or "GET")
        self.headers: Mapping[str, str] = settings.get("headers") or {}
        self.expect_status = int(settings.get("expect_status") or 200)
        self.max_latency: float | None = settings.get("max_latency")
        self.json_path: str | None = settings.get("json_path")
        self.timeout = float(spec.timeout)
        self.tls = TlsSettings(settings, estate.path.parent)

    async def measure(self, ctx: Context) -> Reading:
        import aiohttp

        try:
            url = render(self.url, ctx)
            headers: dict[str, str] = {}
            secrets = dict(url.env)
            for name, template in self.headers.items():
                header = render(template, ctx)
                headers[name] = header.text
                secrets.update(header.env)
        except TemplateError as exc:
            return Reading(error=str(exc))
        hidden = [*secrets.values(), *header_secrets(headers)]
        ssl_option = self.tls.option()
        if self.tls.problem:
            return Reading(error=self.tls.problem)
        started = time.monotonic()
        try:
            async with self.resources.http().request(
                self.method,
                url.text,
                headers=headers,
                ssl=ssl_option,
                # A probe that expects a redirect must see it rather than follow it.
                allow_redirects=not 300 <= self.expect_status < 400,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                raw = await response.read()
                status, reason = response.status, response.reason or ""
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            return Reading(error=client_error(exc, url.display, self.timeout, hidden))
        latency = time.monotonic() - started
        took = f"in {format_duration(latency)}"
        if status != self.expect_status:
            seen = f"HTTP {status} {reason}".rstrip()
            why = f"{seen}, expected {self.expect_status}"
            return Reading(breach=why, detail=f"{why} ({took})")
        if self.max_latency is not None and latency > self.max_latency:
            why = (
                f"latency {format_duration(latency)} > max_latency "
                f"{format_duration(self.max_latency)}"
            )
            return Reading(breach=why, detail=why)
        if not self.json_path:
            return Reading(latency, detail=f"HTTP {status} {took}")
        return self._number(raw, status, took)

    def _number(self, raw: bytes, status: int, took: str) -> Reading:
        assert self.json_path is not None
        try:
            body = parse_json(raw)
        except ValueError:
            return Reading(error=f"json_path {self.json_path}: the response is not JSON")
        found: Any = lookup(body, self.json_path)
        if found is MISSING:
            return Reading(detail=f"no data ({self.json_path} is not in the response)")
        if found is None:
            return Reading(detail=f"no data ({self.json_path} is null)")
        if isinstance(found, bool) or not isinstance(found, int | float | str):
            return Reading(error=f"json_path {self.json_path}: not a number ({found!r:.40})")
        try:
            value = float(found)
        except ValueError:
            return Reading(error=f"json_path {self.json_path}: not a number ({found!r:.40})")
        if not math.isfinite(value):
            return Reading(detail=f"no data ({self.json_path} is {found})")
        return Reading(value, detail=f"HTTP {status} {took}")

    async def baseline(self, ctx: Context) -> Reading:
        """A probe has no past: the baseline is a measurement taken before the wave."""
        return await self.measure(ctx)

    async def close(self) -> None:
        return None  # the HTTP session is the rollout's (Resources)
