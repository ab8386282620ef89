"""Health from a real Prometheus, over its HTTP API (aiohttp).

Measurements are instant queries (``/api/v1/query``) evaluated at the engine's clock; a baseline
is the median of a ``query_range`` over ``baseline_window`` when one is set (else an instant
query); :meth:`PrometheusCheck.history` fills a sparkline from a ``query_range``.

The result is read exactly as Prometheus returns it:

* a vector with one sample, or a scalar → its value;
* an empty vector → no data (the gate: inconclusive);
* several series → an error naming the count, unless ``aggregate`` (max, min, mean, sum,
  median) says how to fold them — and then a NaN/Inf in any of them is no data, not a smaller
  maximum (fail closed);
* NaN / ±Inf → no data;
* ``"status": "error"`` (bad PromQL, a query timeout…) → an error carrying Prometheus's message;
* HTTP 4xx/5xx, connection refused, timeout, TLS failure → an error.

Credentials: ``token`` (bearer) or ``username``/``password`` (basic auth), normally from
``{env.X}``. They are sent but never shown: every message passes through
:func:`sluice.engine.model.template.redact` with them, and URLs are shown in their ``display`` form.
"""

from __future__ import annotations

import base64
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sluice.engine.checks.base import Reading
from sluice.engine.model.template import Context, TemplateError, redact, render
from sluice.engine.model.units import format_duration
from sluice.engine.support.http_client import (
    TlsSettings,
    body_snippet,
    client_error,
    header_secrets,
    one_line,
    parse_json,
)

if TYPE_CHECKING:
    from sluice.engine.model.estate import CheckSpec, Estate
    from sluice.engine.support.clock import Clock
    from sluice.engine.support.resources import Resources

#: Prometheus refuses a range query of more than 11,000 points per series.
MAX_POINTS = 11_000

AGGREGATES: dict[str, Callable[[Sequence[float]], float]] = {
    "max": max,
    "min": min,
    "mean": statistics.fmean,
    "sum": math.fsum,
    "median": statistics.median,
}


class PrometheusError(Exception):
    """A query failed (raised only by :meth:`PrometheusCheck.history`); one line, secrets masked."""


@dataclass
class _Request:
    """One target's rendered request: real values to send, display values to show."""

    base_url: str
    display_url: str
    query: str
    headers: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)


class PrometheusCheck:
    """A check whose value is a PromQL query's result for one target."""

    def __init__(self, spec: CheckSpec, estate: Estate, clock: Clock, resources: Resources):
        self.spec = spec
        self.clock = clock
        self.resources = resources
        settings = spec.settings
        self.url = str(settings["url"])
        self.query = str(settings["query"])
        self.token: str | None = settings.get("token")
        self.username: str | None = settings.get("username")
        self.password: str | None = settings.get("password")
        self.headers: Mapping[str, str] = settings.get("headers") or {}
        self.aggregate: str | None = settings.get("aggregate")
        self.baseline_window: float | None = settings.get("baseline_window")
        self.timeout = float(spec.timeout)
        self.tls = TlsSettings(settings, estate.path.parent)

    # -- the check-source protocol ------------------------------------------------------------

    async def measure(self, ctx: Context) -> Reading:
        """The query's value now (an instant query at the engine clock's time)."""
        data = await self._api(ctx, "query", {"time": _fmt_time(self.clock.now())})
        if isinstance(data, str):
            return Reading(error=data)
        return self._instant(data)

    async def baseline(self, ctx: Context) -> Reading:
        """The median over ``baseline_window`` before now, or the current value without one."""
        window = self.baseline_window
        if not window:
            return await self.measure(ctx)
        end = self.clock.now()
        step = min(window, max(self.spec.interval, window / 1000))
        points = await self._range(ctx, end - window, end, step)
        if isinstance(points, str):
            return Reading(error=points)
        values = [v for _, v in points if math.isfinite(v)]
        if not values:
            return Reading(detail=f"no data in the last {format_duration(window)}")
        return Reading(
            statistics.median(values),
            detail=f"median of {len(values)} samples over {format_duration(window)}",
        )

    async def baseline_series(self, ctx: Context) -> list[Reading]:
        """``compare = "mann-whitney"``: the samples over ``baseline_window`` (the U test's pool),
        one per check ``interval``; without a window, the one reading :meth:`baseline` gives."""
        window = self.baseline_window
        if not window:
            return [await self.baseline(ctx)]
        end = self.clock.now()
        step = min(window, max(self.spec.interval, window / 1000))
        points = await self._range(ctx, end - window, end, step)
        if isinstance(points, str):
            return [Reading(error=points)]
        values = [v for _, v in points if math.isfinite(v)]
        if not values:
            return [Reading(detail=f"no data in the last {format_duration(window)}")]
        return [
            Reading(v, detail=f"pre-wave sample over {format_duration(window)}") for v in values
        ]

    async def close(self) -> None:
        return None  # the HTTP session is the rollout's (Resources)

    # -- sparkline history ---------------------------------------------------------------------

    async def history(
        self, ctx: Context, start: float, end: float, step: float
    ) -> list[tuple[float, float]]:
        """``(unix time, value)`` points between ``start`` and ``end``, for a sparkline.

        Points whose value is NaN or ±Inf are left out (a gap, not a zero).

        Raises:
            PrometheusError: the query failed (one line, secrets masked).
        """
        if end < start:
            raise PrometheusError("history: end is before start")
        step = max(step, (end - start) / MAX_POINTS, 0.001)
        points = await self._range(ctx, start, end, step)
        if isinstance(points, str):
            raise PrometheusError(points)
        return [(t, v) for t, v in points if math.isfinite(v)]

    # -- reading results -----------------------------------------------------------------------

    def _instant(self, data: Mapping[str, Any]) -> Reading:
        kind, result = data.get("resultType"), data.get("result")
        try:
            if kind == "scalar":
                return _finite(_sample_value(result))
            if kind == "vector" and isinstance(result, list):
                if not result:
                    return Reading(detail="no data (empty result)")
                values = [_sample_value(sample.get("value")) for sample in result]
                if len(values) == 1:
                    return _finite(values[0])
                if not self.aggregate:
                    return Reading(error=self._too_many(result))
                return self._fold(values)
        except (TypeError, ValueError, AttributeError, IndexError):
            return Reading(error="unexpected result from Prometheus (not a number)")
        if kind == "matrix":
            return Reading(
                error="the query returns a range vector; use an instant vector "
                "(e.g. wrap it in avg_over_time(…))"
            )
        return Reading(error=f"unexpected result type {kind!r} from Prometheus")

    def _fold(self, values: Sequence[float]) -> Reading:
        assert self.aggregate is not None
        bad = sum(1 for v in values if not math.isfinite(v))
        if bad:
            # Fail closed: a series without a number never makes the aggregate look healthier.
            return Reading(detail=f"no data ({bad} of {len(values)} series NaN/Inf)")
        return Reading(
            AGGREGATES[self.aggregate](values),
            detail=f"{self.aggregate} of {len(values)} series",
        )

    def _too_many(self, result: Sequence[Mapping[str, Any]]) -> str:
        shown = ", ".join(_labels(s.get("metric") or {}) for s in result[:2])
        more = ", …" if len(result) > 2 else ""
        return one_line(
            f"the query returned {len(result)} series ({shown}{more}), expected one: "
            f'narrow it, or set aggregate = "max" | "min" | "mean" | "sum" | "median"'
        )

    async def _range(
        self, ctx: Context, start: float, end: float, step: float
    ) -> list[tuple[float, float]] | str:
        """Range-query points, several series folded per timestamp; or an error message."""
        params = {"start": _fmt_time(start), "end": _fmt_time(end), "step": f"{step:.3f}"}
        data = await self._api(ctx, "query_range", params)
        if isinstance(data, str):
            return data
        kind, result = data.get("resultType"), data.get("result")
        if kind != "matrix" or not isinstance(result, list):
            return f"unexpected result type {kind!r} from a Prometheus range query"
        if len(result) > 1 and not self.aggregate:
            return self._too_many(result)
        by_time: dict[float, list[float]] = {}
        try:
            for series in result:
                for stamp, raw in series.get("values") or ():
                    by_time.setdefault(float(stamp), []).append(float(raw))
        except (TypeError, ValueError, AttributeError):
            return "unexpected result from Prometheus (not a number)"
        points = []
        for stamp in sorted(by_time):
            values = by_time[stamp]
            if len(values) == 1:
                points.append((stamp, values[0]))
            else:
                folded = self._fold(values).value
                points.append((stamp, math.nan if folded is None else folded))
        return points

    # -- the HTTP side -------------------------------------------------------------------------

    def _prepare(self, ctx: Context) -> _Request:
        """Render URL, query and credentials for ``ctx`` (``TemplateError`` when one can't)."""
        url = render(self.url, ctx)
        query = render(self.query, ctx)
        request = _Request(url.text, url.display.rstrip("/"), query.text)
        secrets = {**url.env, **query.env}
        for name, template in self.headers.items():
            header = render(template, ctx)
            request.headers[name] = header.text
            secrets.update(header.env)
        request.secrets.extend(header_secrets(request.headers))
        if self.token and self.username:
            raise TemplateError("set either token (bearer) or username/password, not both")
        if self.token:
            token = render(self.token, ctx)
            request.headers["Authorization"] = f"Bearer {token.text}"
            request.secrets.append(token.text)
            secrets.update(token.env)
        elif self.username:
            user = render(self.username, ctx)
            password = render(self.password or "", ctx)
            # Built by hand: aiohttp deprecates BasicAuth/auth= on its way to 4.0.
            pair = base64.b64encode(f"{user.text}:{password.text}".encode()).decode("ascii")
            request.headers["Authorization"] = f"Basic {pair}"
            request.secrets.extend([password.text, pair])
            secrets.update(user.env)
            secrets.update(password.env)
        request.secrets.extend(secrets.values())
        return request

    async def _api(
        self, ctx: Context, endpoint: str, params: dict[str, str]
    ) -> Mapping[str, Any] | str:
        """POST one API call; its ``data`` on success, else a one-line error message."""
        import aiohttp

        try:
            request = self._prepare(ctx)
        except TemplateError as exc:
            return str(exc)
        ssl_option = self.tls.option()
        if self.tls.problem:
            return self.tls.problem
        url = _api_url(request.base_url, endpoint)
        # POST (form-encoded) keeps long queries out of URLs and proxy logs; Prometheus, Thanos,
        # Mimir and VictoriaMetrics all accept it.
        form = {"query": request.query, **params}
        try:
            async with self.resources.http().post(
                url,
                data=form,
                headers=request.headers,
                ssl=ssl_option,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                raw = await response.read()
                status, reason = response.status, response.reason or ""
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            return client_error(exc, request.display_url, self.timeout, request.secrets)
        try:
            body = parse_json(raw)
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("status") == "error":
            kind = body.get("errorType") or "error"
            message = f"Prometheus {kind}: {body.get('error') or 'no message'}"
            return one_line(redact(message, request.secrets))
        if status >= 400:
            snippet = body_snippet(raw, request.secrets)
            message = f"{request.display_url}: HTTP {status} {reason}" + (
                f": {snippet}" if snippet else ""
            )
            return one_line(redact(message, request.secrets))
        if (
            not isinstance(body, dict)
            or body.get("status") != "success"
            or not isinstance(body.get("data"), dict)
        ):
            snippet = body_snippet(raw, request.secrets, 80)
            return f"{request.display_url}: not a Prometheus API answer ({snippet or 'empty body'})"
        data: Mapping[str, Any] = body["data"]
        return data


def _api_url(base: str, endpoint: str) -> str:
    """``base`` (possibly under a path prefix, possibly with a query string) + the API path."""
    location, mark, query = base.partition("?")
    return f"{location.rstrip('/')}/api/v1/{endpoint}{mark}{query}"


def _sample_value(pair: Any) -> float:
    """The value of a ``[unix time, "value"]`` pair (Prometheus sends numbers as strings)."""
    if not isinstance(pair, list | tuple) or len(pair) != 2 or not isinstance(pair[1], str):
        raise ValueError("not a sample")
    return float(pair[1])


def _finite(value: float) -> Reading:
    if math.isfinite(value):
        return Reading(value)
    return Reading(detail=f"no data ({'NaN' if math.isnan(value) else 'Inf'})")


def _labels(metric: Mapping[str, Any]) -> str:
    """A series as PromQL writes it: ``name{label="value", …}``."""
    name = str(metric.get("__name__", ""))
    labels = ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items()) if k != "__name__")
    return f"{name}{{{labels}}}"


def _fmt_time(t: float) -> str:
    return f"{t:.3f}"
