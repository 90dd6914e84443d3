"""The bundled broker and redis-server restarted by the stack (as `genloom up` does), killed for real:
every job accepted before a broker restart ends in exactly one terminal event, its followers included."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid

import pytest

from gateway.app import create_app
from gateway.auth import ApiKeys, generate_key
from gateway.inprocess import InProcessServer
from infra.blob import LocalBlobStore
from infra.client import GenloomClient
from infra.kafka.clients import ensure_topics
from infra.kafka.topics import CONTROL, catalogue
from infra.redis.client import connect
from infra.redis.jobrecord import JobRecord
from infra.redis.jobstore import JobStore
from infra.settings.gateway import GatewaySettings
from infra.stack import Stack
from schemas.enums import JobStatus, Modality
from schemas.requests import scoped_job_id
from tests.conftest import FAST_STREAMS_ENV, REQUEST_SIGNING_KEY
from tests.edge_helpers import text_job
from tests.kafka_helpers import read_topic, started_producer

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(tmp_path):
    stack = Stack(log_dir=tmp_path / "logs", partitions=2, job_partitions=2)
    stack.start_backends()
    yield stack
    stack.stop()


@pytest.fixture
def with_streams(stack):
    """The stack's streams process (fan-out and reconciler), as `genloom up` runs it."""
    stack.env.update(FAST_STREAMS_ENV, GENLOOM_REQUEST_SIGNING_KEY=REQUEST_SIGNING_KEY.decode(),
                     GENLOOM_RECONCILER_INTERVAL_S="1")
    stack.launch(stack.add("streams", ["streams"]))
    return stack


async def _fanned_out(store: JobStore, job_id: str, timeout: float = 90.0) -> None:
    """Wait until the fan-out recorded an event of the job (its `accepted`)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        record = await store.load(job_id)
        if record is not None and record.last_event_id:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"the fan-out recorded nothing of {job_id} in {timeout:.0f}s")


async def _follow(client: GenloomClient, job_id: str) -> list:
    return [event async for event in client.events(job_id)]


async def _crash_and_revive(stack: Stack, pid: int, server) -> list[str]:
    os.kill(pid, signal.SIGKILL)
    while not server.crashed:
        await asyncio.sleep(0.02)
    return await asyncio.to_thread(stack.revive_backends)  # it runs its own event loop


async def test_a_broker_restart_ends_every_accepted_job_once_and_the_stack_keeps_serving(with_streams, tmp_path,
                                                                                       text_models):
    stack = with_streams
    key = generate_key()
    redis = connect(stack.redis_url)
    producer = await started_producer(stack.bootstrap)
    blobs = LocalBlobStore(tmp_path / "blobs")
    await blobs.start()
    app = create_app(GatewaySettings(max_inflight=10, sse_keepalive_s=0.5, publish_timeout_s=5), redis=redis,
                     producer=producer, api_keys=ApiKeys([(key, "t-restart")]), blobs=blobs,
                     text_models=text_models, signing_key=REQUEST_SIGNING_KEY)
    server = await InProcessServer(app).start()
    client = GenloomClient(server.url, key)
    store = JobStore(redis)
    try:
        ids = [(await client.submit(text_job(f"job {i}", job_id=f"r-{uuid.uuid4().hex[:8]}")))["id"]
               for i in range(4)]
        for job in ids:
            await _fanned_out(store, scoped_job_id("t-restart", job))  # accepted, as far as the fan-out goes
        followers = [asyncio.create_task(_follow(client, job)) for job in ids]
        await asyncio.sleep(0.3)  # the followers are waiting on the replay logs (no worker runs here)
        port = stack.broker.port

        said = await _crash_and_revive(stack, stack.broker.pid, stack.broker)

        assert stack.broker.port == port and not stack.broker.crashed and "4 job(s)" in said[0]
        assert await ensure_topics(stack.bootstrap, catalogue(2, 2)) == []  # recreated by the restart
        seen = await asyncio.wait_for(asyncio.gather(*followers), 30)
        for job, events in zip(ids, seen):
            terminals = [e for e in events if e.terminal]
            assert [e.type for e in events][0] == "accepted"
            assert len(terminals) == 1 and terminals[0].type == "failed", (job, events)
            assert terminals[0].data["code"] == "job_lost" and terminals[0].data["retryable"] is True
            assert (await client.get(job))["status"] == "failed"
        assert await store.inflight("t-restart", "text") == 0

        # the stack keeps serving: a new job is published to the restarted broker and is left running,
        # and the advised resubmit (same request, same job_id) runs the lost job again
        after = (await client.submit(text_job("after", job_id=f"r-{uuid.uuid4().hex[:8]}")))["id"]
        await _fanned_out(store, scoped_job_id("t-restart", after))  # the streams process fans out from the restarted broker
        again = await client.submit(text_job("job 0", job_id=ids[0]))
        assert again["status"] == "queued" and (await client.get(after))["status"] == "queued"
        assert await store.inflight("t-restart", "text") == 2

        # the streams process's reconciler ends a job no worker started for longer than the queue limit
        stale = f"r-stale-{uuid.uuid4().hex[:8]}"
        await store.admit(stale, JobRecord(status=JobStatus.QUEUED, tenant="t-stale", modality=Modality.TEXT,
                                           fingerprint="f", created_at=time.time() - 7 * 3600), max_inflight=5)
        await _fanned_out(store, stale, timeout=30)
        record = await store.load(stale)
        assert record.error.code == "job_lost" and "not started by any worker" in record.error.message
        assert await store.inflight("t-stale", "text") == 0
        # and asks the workers to stop it, should one still hold it
        cancels = await read_topic(stack.bootstrap, CONTROL, until=lambda ms: any(m.key == stale.encode() for m in ms))
        (cancel,) = [json.loads(m.value) for m in cancels if m.key == stale.encode()]
        assert cancel["type"] == "cancel" and cancel["tenant"] == "t-stale" and "job_lost" in cancel["reason"]
    finally:
        await client.aclose()
        await server.stop()
        await producer.stop()
        await redis.aclose()


async def test_a_crashed_redis_server_is_restarted_on_its_url(stack):
    url = stack.redis_url
    said = await _crash_and_revive(stack, stack.redis.pid, stack.redis)
    assert stack.redis_url == url and "redis-server exited" in said[0]
    redis = connect(url)
    try:
        assert await redis.ping()
    finally:
        await redis.aclose()
