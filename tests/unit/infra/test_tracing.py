"""Trace context across Kafka headers: written only for a traced span, read back as the same trace."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from infra.tracing import TRACEPARENT, parent_of, with_traceparent


def test_an_untraced_span_leaves_the_headers_as_they_are():
    headers = [("x-genloom-signature", b"abc")]
    assert with_traceparent(headers, trace.INVALID_SPAN) == headers
    assert parent_of(headers) is None


def test_a_traced_span_replaces_an_earlier_context_and_is_read_back():
    tracer = TracerProvider().get_tracer("t")  # a provider of its own: the global one stays untouched
    upstream, ours = tracer.start_span("upstream"), tracer.start_span("ours")
    headers = with_traceparent([("a", b"1")], upstream)
    headers = with_traceparent(headers, ours)
    assert [k for k, _ in headers] == ["a", TRACEPARENT]  # one traceparent, the latest
    child = tracer.start_span("child", context=parent_of(headers))
    assert child.parent.span_id == ours.get_span_context().span_id
    assert child.get_span_context().trace_id == ours.get_span_context().trace_id
