"""`GET /metrics` of the gateway (Prometheus text format), and the HTTP metrics and server spans
behind it (the span is current while the request is handled, so the job it submits carries it).

Every request is counted by its route *template* (`/v1/jobs/{job_id}`, never the id itself), method
and status, and timed to its response's headers (a stream's length is the client's business).
Consumer lag per topic and group is read from Kafka when `/metrics` is scraped, at most once per
`lag_interval_s` and within `lag_timeout_s`: a slow or absent broker leaves the last figures in
place and never holds the scrape up. The gateway is the one process that reports lag, so a
deployment scrapes it once for the whole cluster.
"""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from infra.kafka.admin import topic_report
from infra.metrics import CONSUMER_LAG, HTTP_LATENCY, HTTP_REQUESTS
from infra.settings import TopicSettings
from infra.tracing import start_span

log = logging.getLogger(__name__)
router = APIRouter()


class LagReader:
    """Consumer lag for `/metrics`, read at most once per interval."""

    def __init__(self, bootstrap: str | None, *, interval_s: float = 15.0, timeout_s: float = 3.0) -> None:
        self.bootstrap = bootstrap
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._read_at = float("-inf")
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        if not self.bootstrap or time.monotonic() - self._read_at < self.interval_s:
            return
        async with self._lock:
            if time.monotonic() - self._read_at < self.interval_s:
                return
            self._read_at = time.monotonic()
            try:
                rows = await asyncio.wait_for(topic_report(self.bootstrap, TopicSettings()), self.timeout_s)
            except Exception as exc:  # noqa: BLE001 (a scrape must answer; the figures stay as they were)
                log.warning("consumer lag not read for /metrics: %s: %s", type(exc).__name__, exc)
                return
            for row in rows:
                if row.group and row.lag is not None:
                    CONSUMER_LAG.labels(row.name, row.group).set(row.lag)


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    lag: LagReader | None = getattr(request.app.state, "lag", None)
    if lag is not None:
        await lag.refresh()
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


class HttpMetrics:
    """ASGI middleware: count and time every HTTP request by route template, method and status."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        span = start_span(f"HTTP {scope['method']}", kind=SpanKind.SERVER)  # no-op unless tracing is on
        token = otel_context.attach(trace.set_span_in_context(span))

        async def sending(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                route = _route(scope)
                HTTP_LATENCY.labels(route, scope["method"]).observe(time.perf_counter() - start)
                HTTP_REQUESTS.labels(route, scope["method"], str(status)).inc()
                span.update_name(f"{scope['method']} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            otel_context.detach(token)
            span.end()


def _route(scope) -> str:
    """The matched route's template, so ids never become label values; `other` for no route (404s)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path or "other"
