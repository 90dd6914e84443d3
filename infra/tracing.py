"""OpenTelemetry traces that follow a job across its Kafka hops.

One job is one trace: the gateway's HTTP span, the preparation processor's span (with one child
per stage), the worker's span (with `prefill` and `decode` children), and the fan-out's spans for
the job's `started` and terminal events. The context crosses each hop as a W3C `traceparent` Kafka
header: on the job message (gateway -> preparation -> worker) and on the events a worker emits (the
moderation gate passes it on to `genloom.events`).

Off by default (`GENLOOM_TRACING_EXPORTER=none`): the API's no-op tracer costs a few function calls
per job and no header is written. `otlp` exports over OTLP/HTTP to `OTEL_EXPORTER_OTLP_ENDPOINT`
(the standard variables apply); `file` appends one JSON object per finished span to
`GENLOOM_TRACING_FILE` (what the tests read; handy without a collector); `console` prints them.
Span attributes hold the job's internal id, modality and model, never prompt text, a tenant's own
ids or personal data.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from infra.settings.core import TracingSettings

TRACEPARENT = "traceparent"
_PROPAGATOR = TraceContextTextMapPropagator()
_SETUP = threading.Lock()
_configured = False


def setup_tracing(service: str, settings: TracingSettings | None = None) -> bool:
    """Install this process's tracer provider for `service` (once); False when tracing is off."""
    global _configured
    settings = settings or TracingSettings()
    if settings.exporter == "none":
        return False
    with _SETUP:
        if _configured:
            return True
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        provider = TracerProvider(resource=Resource.create({"service.name": service}),
                                  sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)))
        if settings.exporter == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        elif settings.exporter == "file":
            if settings.file is None:
                raise ValueError("GENLOOM_TRACING_EXPORTER=file needs GENLOOM_TRACING_FILE: set it to a file path")
            provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(settings.file)))
        else:
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
        trace.set_tracer_provider(provider)
        _configured = True
        return True


def tracer() -> trace.Tracer:
    return trace.get_tracer("genloom")


def parent_of(headers: Iterable[tuple[str, bytes]] | None) -> otel_context.Context | None:
    """The trace context a message's `traceparent` header carries, or None."""
    for name, value in headers or ():
        if name == TRACEPARENT and value:
            return _PROPAGATOR.extract({TRACEPARENT: value.decode("latin-1")})
    return None


def start_span(name: str, headers: Iterable[tuple[str, bytes]] | None = None, *, start_s: float | None = None,
               kind: SpanKind = SpanKind.INTERNAL, attributes: dict | None = None,
               parent: Span | None = None) -> Span:
    """A span under `parent`, else under the context the headers carry (a new trace without either)."""
    ctx = trace.set_span_in_context(parent) if parent is not None else parent_of(headers)
    return tracer().start_span(name, context=ctx, kind=kind, attributes=attributes,
                               start_time=_ns(start_s) if start_s is not None else None)


def record_span(name: str, parent: Span, start_s: float, end_s: float, attributes: dict | None = None) -> None:
    """A finished child span of `parent` with the times given (work measured before it was traced)."""
    if not parent.get_span_context().is_valid:
        return
    span = start_span(name, parent=parent, start_s=start_s, attributes=attributes)
    span.end(end_time=_ns(max(end_s, start_s)))


def traceparent(span: Span | None = None) -> bytes | None:
    """The `traceparent` value of `span` (the current span without one), or None when not traced."""
    span = span if span is not None else trace.get_current_span()
    if not span.get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    value = carrier.get(TRACEPARENT)
    return value.encode("latin-1") if value else None


def with_traceparent(headers: Sequence[tuple[str, bytes]] | None, span: Span | None = None
                     ) -> list[tuple[str, bytes]]:
    """`headers` carrying `span`'s context (replacing an earlier one); unchanged when it is not traced."""
    value = traceparent(span)
    kept = list(headers or ())
    if value is None:
        return kept
    return [(k, v) for k, v in kept if k != TRACEPARENT] + [(TRACEPARENT, value)]


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


class JsonLinesExporter:
    """Each finished span as one JSON line (ids in hex, times in ns); written and flushed at once."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()

    def export(self, spans):
        from opentelemetry.sdk.trace.export import SpanExportResult

        lines = []
        for s in spans:
            parent = s.parent.span_id if s.parent is not None else None
            lines.append(json.dumps({
                "trace_id": f"{s.context.trace_id:032x}", "span_id": f"{s.context.span_id:016x}",
                "parent_id": f"{parent:016x}" if parent else None, "name": s.name,
                "service": s.resource.attributes.get("service.name"), "kind": s.kind.name,
                "start_ns": s.start_time, "end_ns": s.end_time, "attributes": dict(s.attributes or {}),
                "pid": os.getpid(),
            }))
        with self._lock, open(self._path, "a") as out:
            out.write("\n".join(lines) + "\n")
            out.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
