"""Prometheus metrics of every genloom process, one module so every name is defined once.

Where a metric means what one of vLLM's means, it has vLLM's name under the `genloom:` prefix
(`genloom:time_to_first_token_seconds` is `vllm:time_to_first_token_seconds`, measured the same way:
from the request's arrival, here the gateway's `submitted_at`, to the first output), and vLLM's
bucket edges, so dashboards built for vLLM read genloom with the prefix changed. The rest are
genloom's own: consumer lag per topic and group, events fanned out, dead letters, webhook
deliveries, cache lookups, redactions and moderation decisions.

The gateway serves `/metrics` on its own port; workers and stream processors serve it on
`GENLOOM_METRICS_PORT` when it is set (`serve_metrics`). Labels are bounded sets (modality, model,
outcome, code, entity type, category): never a tenant, job or user id.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

#: vLLM's edges for time to first token (seconds)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                40.0, 80.0, 160.0, 640.0, 2560.0)
#: vLLM's edges for the time between output tokens
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
               80.0)
#: vLLM's edges for whole-request and queue times
REQUEST_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
                   480.0, 960.0, 1920.0, 7680.0)
#: vLLM's edges for the tokens one engine step runs through the model
ITERATION_TOKEN_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
#: edges for one phase of an engine step (a decode of the batch, a prefill of new prompts)
STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
                30.0)
#: edges for the platform's own short hops (HTTP handling, preparation stages, fan-out)
HOP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_JOB = ("modality", "model_name")

# -- workers: the request's life, as vLLM reports it ----------------------------------------------------------

TTFT = Histogram("genloom:time_to_first_token_seconds", "From the request's arrival at the gateway to its first"
                 " output (token, progress step, audio or artifact).", _JOB, buckets=TTFT_BUCKETS)
ITL = Histogram("genloom:inter_token_latency_seconds", "Time between two output tokens of one text job.", _JOB,
                buckets=ITL_BUCKETS)
E2E = Histogram("genloom:e2e_request_latency_seconds", "From arrival to the terminal event.", _JOB,
                buckets=REQUEST_BUCKETS)
QUEUE = Histogram("genloom:request_queue_time_seconds", "From arrival to a worker starting the job (Kafka, the"
                  " preparation stages and the worker's own queue).", _JOB, buckets=REQUEST_BUCKETS)
RUNNING = Gauge("genloom:num_requests_running", "Jobs a worker has started and not ended.", _JOB)
WAITING = Gauge("genloom:num_requests_waiting", "Jobs a worker has taken from Kafka and not started yet.", _JOB)
KV_CACHE_USAGE = Gauge("genloom:kv_cache_usage_perc", "Share of the text engine's allocated KV cache holding the"
                       " running sequences' tokens, 0 to 1 (the rest is padding and headroom; the cache grows on"
                       " demand, so 1 means it will grow at the next step, not that requests wait).",
                       ("model_name",))
PREFIX_CACHE_QUERIES = Counter("genloom:prefix_cache_queries", "Prompt tokens the text engine looked up in its"
                               " prefix cache.", ("model_name",))
PREFIX_CACHE_HITS = Counter("genloom:prefix_cache_hits", "Of them, tokens whose keys and values the prefix cache held"
                            " (not computed again); hits / queries is the hit rate.", ("model_name",))
ITERATION_TOKENS = Histogram("genloom:iteration_tokens_total", "Tokens one step of the text engine ran through the"
                             " model: a token per decoded row plus the prompt tokens it prefilled.", ("model_name",),
                             buckets=ITERATION_TOKEN_BUCKETS)
ENGINE_STEP = Histogram("genloom:engine_step_seconds", "Time of one phase of a text engine step: decode (one token"
                        " for every running row) or prefill (newly admitted prompts).", ("model_name", "phase"),
                        buckets=STEP_BUCKETS)
ENGINE_PREFILLS = Counter("genloom:engine_prefills", "Prefill passes of the text engine by the torch threads they ran"
                          " on: more than the engine's own count for a lone stream's prompt (GENLOOM_TEXT_PREFILL_THREADS).",
                          ("model_name", "threads"))
PROMPT_TOKENS = Counter("genloom:prompt_tokens", "Prompt tokens of completed text jobs.", _JOB)
GENERATION_TOKENS = Counter("genloom:generation_tokens", "Output tokens of completed text jobs.", _JOB)
REQUEST_SUCCESS = Counter("genloom:request_success", "Completed jobs by finish reason.",
                          (*_JOB, "finished_reason"))
REQUEST_FAILURE = Counter("genloom:request_failure", "Jobs that ended failed or cancelled, by code.",
                          (*_JOB, "code"))

# -- the platform around them ----------------------------------------------------------------------------------

HTTP_REQUESTS = Counter("genloom:http_requests", "Gateway requests by route and status.", ("route", "method",
                                                                                         "status"))
HTTP_LATENCY = Histogram("genloom:http_request_duration_seconds", "Gateway time to the response's headers.",
                         ("route", "method"), buckets=HOP_BUCKETS)
CONSUMER_LAG = Gauge("genloom:consumer_lag", "Messages of a topic its consumer group has not committed yet.",
                     ("topic", "group"))
EVENTS_FANNED_OUT = Counter("genloom:events_fanned_out", "Job events recorded for clients in their replay logs"
                            " (by the fan-out, or by the moderation gate that released them).", ("type",))
DEAD_LETTERS = Counter("genloom:dead_letters", "Messages sent to genloom.dlq, by the reason's code.",
                       ("source", "code"))
WEBHOOK_DELIVERIES = Counter("genloom:webhook_deliveries", "Webhook delivery attempts by outcome.", ("outcome",))
CACHE_LOOKUPS = Counter("genloom:cache_lookups", "Semantic cache lookups by result (hit, miss, skipped).",
                        ("result",))
REDACTIONS = Counter("genloom:redactions", "Personal data replaced by placeholders, by entity type.", ("entity",))
MODERATION_DECISIONS = Counter("genloom:moderation_decisions", "Moderation decisions by stage, action and the"
                               " category that decided (none when allowed).", ("stage", "action", "category"))


def moderation_decided(stage: str, action: str, categories: list[str] | tuple[str, ...] = ()) -> None:
    """One moderation decision counted: the prompt stage counts each of its own; the output gate
    counts what it allows (it publishes no event for those), the fan-out the verdicts the gate
    publishes (blocks and decisions made by a failure policy), so none is counted twice."""
    MODERATION_DECISIONS.labels(stage, action, categories[0] if categories else "none").inc()


STAGE_LATENCY = Histogram("genloom:prepare_stage_seconds", "Time of each preparation stage per batch.", ("stage",),
                          buckets=HOP_BUCKETS)


class JobMetrics:
    """One job's metrics, kept by the worker's JobContext: each gauge moved once each way."""

    __slots__ = ("_labels", "_submitted", "_state", "_last_token")

    def __init__(self, modality: str, model: str | None, submitted_at: float) -> None:
        self._labels = (modality, model or "default")
        self._submitted = submitted_at
        self._state = "waiting"
        self._last_token: float | None = None
        WAITING.labels(*self._labels).inc()

    def started(self, now: float) -> None:
        if self._state != "waiting":
            return
        self._state = "running"
        WAITING.labels(*self._labels).dec()
        RUNNING.labels(*self._labels).inc()
        QUEUE.labels(*self._labels).observe(max(0.0, now - self._submitted))

    def output(self, now: float, first: bool) -> None:
        if first:
            TTFT.labels(*self._labels).observe(max(0.0, now - self._submitted))

    def tokens(self, now: float, count: int) -> None:
        if self._last_token is not None and count > 0:
            gap = (now - self._last_token) / count  # an event may carry several tokens
            for _ in range(min(count, 64)):
                ITL.labels(*self._labels).observe(gap)
        self._last_token = now

    def ended(self, now: float, *, reason: str | None = None, code: str | None = None,
              prompt_tokens: int | None = None, completion_tokens: int | None = None) -> None:
        if self._state == "ended":
            return
        (WAITING if self._state == "waiting" else RUNNING).labels(*self._labels).dec()
        self._state = "ended"
        E2E.labels(*self._labels).observe(max(0.0, now - self._submitted))
        if code is None:
            REQUEST_SUCCESS.labels(*self._labels, reason or "stop").inc()
        else:
            REQUEST_FAILURE.labels(*self._labels, code).inc()
        if prompt_tokens:
            PROMPT_TOKENS.labels(*self._labels).inc(prompt_tokens)
        if completion_tokens:
            GENERATION_TOKENS.labels(*self._labels).inc(completion_tokens)


class Stopwatch:
    """`with Stopwatch(histogram.labels(...)):` observes the block's seconds."""

    __slots__ = ("_metric", "_start")

    def __init__(self, metric) -> None:
        self._metric = metric

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self._metric.observe(time.perf_counter() - self._start)


def serve_metrics(port: int | None, host: str = "127.0.0.1") -> int | None:
    """Serve `/metrics` of this process on `port` (0 picks a free one) in a daemon thread; returns the
    port, or None when `port` is None (metrics are still collected, only not served)."""
    if port is None:
        return None
    server, _thread = start_http_server(port, addr=host, registry=REGISTRY)
    bound = server.server_address[1]
    log.info("metrics on http://%s:%d/metrics", host, bound)
    return bound
