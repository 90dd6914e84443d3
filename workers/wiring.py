"""The edge of the workers: build a runner's Kafka clients and hand them to it.

`python -m workers` and the integration tests build runners here; unit tests hand the runners
in-memory doubles instead.
"""

from __future__ import annotations

from collections.abc import Mapping

from infra.blob.base import BlobStore
from infra.kafka import clients
from infra.kafka.consume import COMMIT_GAP_S
from infra.kafka.topics import EVENTS_RAW

from .handler import Handler
from .moderation.gate import ModerationGate
from .moderation.runner import GROUP as GATE_GROUP
from .moderation.runner import GateRunner
from .runner import READ_AHEAD, JobRunner, default_worker_id, jobs_group


def job_runner(
    handler: Handler,
    *,
    bootstrap: str,
    worker_id: str | None = None,
    max_concurrency: int | None = None,
    fetch_max_wait_ms: int = 10,
    session_timeout_ms: int = 6000,
    heartbeat_interval_ms: int = 1000,
    max_message_bytes: int = 8 * 1024 * 1024,
    cancel_lookback_s: float = 3600.0,
    events_topic: str = EVENTS_RAW,
    read_ahead: int = READ_AHEAD,
    tenant_weights: Mapping[str, int] | None = None,
    signing_key: bytes | None = None,
    started_hold_s: float = 0.0,
) -> JobRunner:
    """A `JobRunner` for `handler` on the broker at `bootstrap` (clients not started yet)."""
    worker_id = worker_id or default_worker_id(handler.modality.value)
    capacity = max_concurrency or handler.max_concurrency
    polling = dict(fetch_max_wait_ms=fetch_max_wait_ms, session_timeout_ms=session_timeout_ms,
                   heartbeat_interval_ms=heartbeat_interval_ms, max_message_bytes=max_message_bytes)
    return JobRunner(
        handler,
        producer=clients.producer(bootstrap, client_id=worker_id, max_message_bytes=max_message_bytes),
        jobs=clients.consumer(bootstrap, group_id=jobs_group(handler.modality), client_id=worker_id,
                              max_poll_records=capacity, **polling),
        control=clients.consumer(bootstrap, group_id=None, client_id=f"{worker_id}-control", **polling),
        worker_id=worker_id, max_concurrency=capacity, cancel_lookback_s=cancel_lookback_s,
        events_topic=events_topic, read_ahead=read_ahead, tenant_weights=tenant_weights,
        signing_key=signing_key, started_hold_s=started_hold_s,
    )


def gate_runner(
    gate: ModerationGate,
    *,
    bootstrap: str,
    fetch_max_wait_ms: int = 10,
    session_timeout_ms: int = 6000,
    heartbeat_interval_ms: int = 1000,
    group: str = GATE_GROUP,
    blobs: BlobStore | None = None,
    source: str = EVENTS_RAW,
    commit_gap_s: float = COMMIT_GAP_S,
    replay=None,
) -> GateRunner:
    """A `GateRunner` for `gate` in consumer `group` on the broker at `bootstrap` (clients not started yet),
    reading the workers' output from `source`; with `replay` (a `ReplayWriter`) it writes what it releases
    into the jobs' replay logs itself."""
    consumer = clients.consumer(bootstrap, group_id=group, client_id="genloom-moderation",
                                max_poll_records=500, fetch_max_wait_ms=fetch_max_wait_ms,
                                session_timeout_ms=session_timeout_ms, heartbeat_interval_ms=heartbeat_interval_ms)
    return GateRunner(gate, consumer=consumer, producer=clients.producer(bootstrap, client_id="genloom-moderation"),
                      group=group, blobs=blobs, source=source, commit_gap_s=commit_gap_s, replay=replay)
