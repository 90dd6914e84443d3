"""A job's metrics move each gauge once each way, whatever order its events come in."""

from __future__ import annotations

from prometheus_client import REGISTRY

from infra.metrics import JobMetrics


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


L = {"modality": "text", "model_name": "m-unit"}


def test_a_job_is_waiting_then_running_then_counted_once():
    m = JobMetrics("text", "m-unit", submitted_at=100.0)
    assert value("genloom:num_requests_waiting", **L) == 1
    m.started(100.5)
    m.started(100.6)  # a second start moves nothing
    assert value("genloom:num_requests_waiting", **L) == 0 and value("genloom:num_requests_running", **L) == 1
    assert value("genloom:request_queue_time_seconds_sum", **L) == 0.5
    m.output(101.0, first=True)
    m.tokens(101.0, 1)
    m.tokens(101.3, 3)  # three tokens in one event: three gaps of 0.1 s
    assert value("genloom:inter_token_latency_seconds_count", **L) == 3
    assert abs(value("genloom:inter_token_latency_seconds_sum", **L) - 0.3) < 1e-9
    m.ended(102.0, reason="length", prompt_tokens=7, completion_tokens=4)
    m.ended(103.0, code="cancelled")  # a second end counts nothing
    assert value("genloom:num_requests_running", **L) == 0
    assert value("genloom:request_success_total", **L, finished_reason="length") == 1
    assert value("genloom:request_failure_total", **L, code="cancelled") == 0
    assert value("genloom:prompt_tokens_total", **L) == 7 and value("genloom:generation_tokens_total", **L) == 4
    assert value("genloom:time_to_first_token_seconds_sum", **L) == 1.0


def test_a_job_that_fails_before_starting_leaves_the_waiting_gauge():
    labels = {"modality": "image", "model_name": "m-unit"}
    m = JobMetrics("image", "m-unit", submitted_at=10.0)
    m.ended(11.0, code="invalid_parameter")
    assert value("genloom:num_requests_waiting", **labels) == 0
    assert value("genloom:request_failure_total", **labels, code="invalid_parameter") == 1
    assert value("genloom:e2e_request_latency_seconds_count", **labels) == 1
