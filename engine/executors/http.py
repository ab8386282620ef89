"""The HTTP executor: an apply is a request to a CI/CD pipeline or deployment API.

``url`` gets a JSON ``body`` (every string inside the table is a template; ``rollback_body``
replaces it for rollbacks) with ``headers`` (secrets from ``{env.X}``). The apply succeeds when
the status is one of ``success_status`` — or, when ``poll_url`` is given, once polling it (GET,
every ``poll_interval``, same headers) finds ``poll_field`` at one of ``success_values``; one of
``failure_values`` fails it. ``poll_url`` and ``cancel_url`` may use fields of the trigger's JSON
response: ``{response.id}``, ``{response.pipeline.id}``.

While polling, 401/403 fail the apply at once; other HTTP errors, refused connections and
timeouts of a single poll are shown and retried until ``timeout`` (APIs are often briefly
inconsistent right after a create). ``timeout`` bounds the whole apply, trigger included, and
is scaled by ``--time-scale`` like every engine timer (``poll_interval`` too).

Abort (the task is cancelled) and timeout send the cancel request (``cancel_method cancel_url``)
when one is configured, bounded by :data:`CANCEL_TIMEOUT`; abort then re-raises
``CancelledError``. Secrets never reach ``describe()``, output lines or reasons.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sluice.engine.executors.base import ApplyResult, Job, OutputSink
from sluice.engine.model.template import Context, TemplateError, placeholders, render
from sluice.engine.model.units import format_duration
from sluice.engine.support.http_client import (
    MISSING,
    TlsSettings,
    body_snippet,
    client_error,
    header_secrets,
    lookup,
    parse_json,
)

if TYPE_CHECKING:
    from sluice.engine.model.estate import Estate, ExecutorSpec
    from sluice.engine.support.clock import Clock
    from sluice.engine.support.resources import Resources

#: Real seconds a cancel request may take (an abort must not hang on a dead API).
CANCEL_TIMEOUT = 10.0
#: Real seconds one poll request may take before it counts as a failed poll.
POLL_REQUEST_TIMEOUT = 30.0
#: Poll statuses that will not fix themselves: fail the apply at once.
FATAL_POLL_STATUSES = frozenset({401, 403})


@dataclass
class _Call:
    """One apply's rendered request, and what it learnt (for polling and cancelling)."""

    url: str
    display_url: str
    headers: dict[str, str]
    body: Any
    secrets: list[str]
    response: Mapping[str, Any] | None = None
    last_state: str = ""
    last_problem: str = ""


class HttpExecutor:
    def __init__(self, spec: ExecutorSpec, estate: Estate, clock: Clock, resources: Resources):
        self.spec = spec
        self.clock = clock
        self.resources = resources
        s = spec.settings
        self.url = str(s["url"])
        self.method = str(s.get("method") or "POST")
        self.body: Mapping[str, Any] | None = s.get("body")
        self.rollback_body: Mapping[str, Any] | None = s.get("rollback_body")
        self.headers: Mapping[str, str] = s.get("headers") or {}
        self.success_status = tuple(s.get("success_status") or (200, 201, 202, 204))
        self.poll_url: str | None = s.get("poll_url")
        self.poll_interval = float(s.get("poll_interval") or 5.0)
        self.poll_field: str | None = s.get("poll_field")
        self.success_values = {v.lower() for v in s.get("success_values") or ("success",)}
        self.failure_values = {v.lower() for v in s.get("failure_values") or ()}
        self.cancel_url: str | None = s.get("cancel_url")
        self.cancel_method = str(s.get("cancel_method") or "POST")
        self.timeout = float(s.get("timeout") or 900.0)
        self.tls = TlsSettings(s, estate.path.parent)

    def describe(self, job: Job) -> str:
        try:
            url = render(self.url, job.context).display
        except TemplateError as exc:
            return f"<{exc}>"
        text = f"{self.method} {url}"
        if self.poll_url and self.poll_field:
            text += (
                f", then poll until {self.poll_field} is {'/'.join(sorted(self.success_values))}"
            )
        return text

    async def apply(self, job: Job, output: OutputSink) -> ApplyResult:
        try:
            call = self._render(job)
        except TemplateError as exc:
            return ApplyResult(False, str(exc))
        if self.poll_url and not self.poll_field:
            return ApplyResult(False, "poll_url is set but poll_field is not")
        ssl_option = self.tls.option()
        if self.tls.problem:
            return ApplyResult(False, self.tls.problem)
        limit = self.timeout  # real seconds: a real command takes real time
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        job.launching()
        try:
            async with asyncio.timeout_at(deadline):
                return await self._run(job, call, ssl_option, output, deadline)
        except TimeoutError:
            await self._cancel(job, call, ssl_option, output)
            seen = call.last_problem or call.last_state
            last = f" (last: {seen})" if seen else ""
            return ApplyResult(False, f"timed out after {format_duration(self.timeout)}{last}")
        except asyncio.CancelledError:
            await self._cancel(job, call, ssl_option, output)
            raise

    async def close(self) -> None:
        return None  # the HTTP session is the rollout's (Resources)

    # -- one apply ---------------------------------------------------------------------------

    def _render(self, job: Job) -> _Call:
        ctx = job.context
        url = render(self.url, ctx)
        secrets = dict(url.env)
        headers = {}
        for name, template in self.headers.items():
            header = render(template, ctx)
            headers[name] = header.text
            secrets.update(header.env)
        body_template = self.body
        if job.action == "rollback" and self.rollback_body is not None:
            body_template = self.rollback_body
        body = _render_tree(body_template, ctx, secrets) if body_template is not None else None
        hidden = [*secrets.values(), *header_secrets(headers)]
        return _Call(url.text, url.display, headers, body, hidden)

    async def _run(
        self, job: Job, call: _Call, ssl_option: Any, output: OutputSink, deadline: float
    ) -> ApplyResult:
        import aiohttp

        output("stdout", f"{self.method} {call.display_url}")
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            async with self.resources.http().request(
                self.method,
                call.url,
                headers=call.headers,
                json=call.body,
                ssl=ssl_option,
                # The apply's own deadline (asyncio.timeout_at) fires first; this is the backstop.
                timeout=aiohttp.ClientTimeout(total=remaining + 1),
            ) as response:
                raw = await response.read()
                status, reason = response.status, response.reason or ""
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            why = client_error(exc, call.display_url, self.timeout, call.secrets)
            return ApplyResult(False, why)
        snippet = body_snippet(raw, call.secrets)
        output("stdout", f"HTTP {status} {reason}" + (f": {snippet}" if snippet else ""))
        try:
            parsed = parse_json(raw) if raw.strip() else None
        except ValueError:
            parsed = None
        if isinstance(parsed, Mapping):
            call.response = parsed
        if status not in self.success_status:
            why = f"HTTP {status} {reason}".rstrip()
            return ApplyResult(False, why + (f": {snippet}" if snippet else ""))
        if not self.poll_url:
            return ApplyResult(True)
        return await self._poll(job, call, ssl_option, output, deadline)

    async def _poll(
        self, job: Job, call: _Call, ssl_option: Any, output: OutputSink, deadline: float
    ) -> ApplyResult:
        import aiohttp

        assert self.poll_url is not None and self.poll_field is not None
        if call.response is None and any(
            p.startswith("response.") for p in placeholders(self.poll_url)
        ):
            return ApplyResult(False, "the response is not a JSON object: poll_url cannot use it")
        try:
            poll = render(self.poll_url, replace(job.context, response=call.response or {}))
        except TemplateError as exc:
            return ApplyResult(False, str(exc))
        hidden = [*call.secrets, *poll.env.values()]
        wanted = "/".join(sorted(self.success_values))
        output("stdout", f"polling {poll.display} until {self.poll_field} is {wanted}")
        while True:
            await self.clock.sleep(self.poll_interval)
            remaining = deadline - asyncio.get_running_loop().time()
            request_timeout = min(POLL_REQUEST_TIMEOUT, remaining + 1)
            try:
                async with self.resources.http().get(
                    poll.text,
                    headers=call.headers,
                    ssl=ssl_option,
                    timeout=aiohttp.ClientTimeout(total=request_timeout),
                ) as response:
                    raw = await response.read()
                    status, reason = response.status, response.reason or ""
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                self._problem(
                    call, output, client_error(exc, poll.display, request_timeout, hidden)
                )
                continue
            if status >= 400:
                problem = f"poll: HTTP {status} {reason}".rstrip()
                if status in FATAL_POLL_STATUSES:
                    return ApplyResult(False, problem)
                self._problem(call, output, problem)
                continue
            try:
                state = lookup(parse_json(raw), self.poll_field)
            except ValueError:
                self._problem(call, output, f"poll: not JSON ({body_snippet(raw, hidden, 60)})")
                continue
            if state is MISSING:
                self._problem(call, output, f"poll: no {self.poll_field} in the response")
                continue
            text = _state_text(state)
            call.last_problem = ""
            if text != call.last_state:
                output("stdout", f"{self.poll_field} = {text}")
                call.last_state = text
            if text.lower() in self.success_values:
                return ApplyResult(True)
            if text.lower() in self.failure_values:
                return ApplyResult(False, f"{self.poll_field} is {text!r}")

    @staticmethod
    def _problem(call: _Call, output: OutputSink, problem: str) -> None:
        """A poll that told us nothing: show it once (until it changes), keep it for the reason."""
        if problem != call.last_problem:
            output("stderr", problem)
        call.last_problem = problem

    async def _cancel(self, job: Job, call: _Call, ssl_option: Any, output: OutputSink) -> None:
        """Send the configured cancel request, best effort and bounded; never raises an error."""
        import aiohttp

        if not self.cancel_url:
            return
        try:
            url = render(self.cancel_url, replace(job.context, response=call.response or {}))
        except TemplateError as exc:
            output("stderr", f"cannot send the cancel request: {exc}")
            return
        hidden = [*call.secrets, *url.env.values()]
        try:
            async with self.resources.http().request(
                self.cancel_method,
                url.text,
                headers=call.headers,
                ssl=ssl_option,
                timeout=aiohttp.ClientTimeout(total=CANCEL_TIMEOUT),
            ) as response:
                await response.read()
                status, reason = response.status, response.reason or ""
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            output(
                "stderr", "cancel failed: " + client_error(exc, url.display, CANCEL_TIMEOUT, hidden)
            )
            return
        output(
            "stdout", f"cancel: {self.cancel_method} {url.display}: HTTP {status} {reason}".rstrip()
        )


def _state_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _render_tree(value: Any, ctx: Context, secrets: dict[str, str]) -> Any:
    """Render every string inside a TOML table (a JSON body); other values pass unchanged."""
    if isinstance(value, str):
        rendered = render(value, ctx)
        secrets.update(rendered.env)
        return rendered.text
    if isinstance(value, Mapping):
        return {k: _render_tree(v, ctx, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_tree(v, ctx, secrets) for v in value]
    if isinstance(value, datetime.date | datetime.time):  # TOML dates: JSON has none
        return value.isoformat()
    return value
