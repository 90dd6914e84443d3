"""The bundled broker restarted, emptied, before a partition holds so many record batches that it stops serving
it (`Stack.recycle_full_broker`, as `genloom up` runs it): only once nothing is in flight and every consumer
group has read what it holds, unless the partition is past the forced limit."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from infra.kafka.admin import end_offsets, fullest_partition, lagging_groups
from infra.kafka.clients import ensure_topics
from infra.kafka.emitter import EventEmitter
from infra.kafka.topics import DLQ, EVENTS, catalogue
from infra.redis.client import connect
from infra.redis.jobrecord import JobRecord
from infra.redis.jobstore import JobStore
from infra.stack import Stack
from schemas.enums import EventSource, JobStatus, Modality
from schemas.events import ModelInfo, Started
from tests.conftest import FAST_STREAMS_ENV
from tests.kafka_helpers import started_producer

pytestmark = pytest.mark.integration

LIMIT = 40


@pytest.fixture
def stack(tmp_path):
    stack = Stack(log_dir=tmp_path / "logs", partitions=2, job_partitions=2, recycle_batches=LIMIT,
                  recycle_force_batches=0, fill_check_s=0.0)
    stack.start_backends()
    yield stack
    stack.stop()


def _partitions(stack: Stack) -> dict[str, int]:
    return {s.name: s.partitions for s in catalogue(stack.partitions, stack.job_partitions)}


async def _fill(bootstrap: str, topic: str, batches: int) -> None:
    """`batches` records on partition 0 of `topic`, each sent alone (a record batch each, as token events go)."""
    producer = await started_producer(bootstrap)
    try:
        for i in range(batches):
            await producer.send_and_wait(topic, f"r{i}".encode(), partition=0)
    finally:
        await producer.stop()


async def _hold_a_job(store: JobStore, tenant: str) -> str:
    job = f"held-{uuid.uuid4().hex[:8]}"
    await store.admit(job, JobRecord(status=JobStatus.QUEUED, tenant=tenant, modality=Modality.TEXT, fingerprint="f",
                                     created_at=time.time()), max_inflight=5)
    return job


def _recycle(stack: Stack) -> list[str]:
    return stack.recycle_full_broker()  # runs its own event loops, as the supervisor's loop does


async def test_a_full_partition_waits_for_the_jobs_in_flight_then_the_broker_restarts_emptied(stack):
    redis = connect(stack.redis_url)
    store = JobStore(redis)
    try:
        await _fill(stack.bootstrap, DLQ, LIMIT - 1)
        assert await asyncio.to_thread(_recycle, stack) == []  # below the limit: nothing to say or do
        await _fill(stack.bootstrap, DLQ, 2)
        tp, batches = fullest_partition(await end_offsets(stack.bootstrap, _partitions(stack)))
        assert (tp.topic, tp.partition) == (DLQ, 0) and batches >= LIMIT

        job = await _hold_a_job(store, "t-recycle")
        pid = stack.broker.pid
        said = await asyncio.to_thread(_recycle, stack)
        assert len(said) == 1 and "1 job(s) are in flight" in said[0] and f"{DLQ}[0]" in said[0], said
        assert await asyncio.to_thread(_recycle, stack) == []  # told once, not at every look
        assert stack.broker.pid == pid  # the job's request may still be in the log: not restarted

        await store.end_lost(job, "test: ended", time.time())
        assert await store.inflight_total() == 0
        said = await asyncio.to_thread(_recycle, stack)
        assert len(said) == 1 and "restarted it, emptied" in said[0] and "with no job in flight" in said[0], said
        assert stack.broker.pid != pid and not stack.broker.crashed
        assert fullest_partition(await end_offsets(stack.bootstrap, _partitions(stack))) == (None, 0)
        assert await ensure_topics(stack.bootstrap, catalogue(2, 2)) == []  # every topic is back
        assert (await store.load(job)).error.message == "test: ended"  # a job that ended is left as it was
    finally:
        await redis.aclose()


async def test_a_group_with_records_left_to_read_holds_the_restart(stack):
    await _fill(stack.bootstrap, DLQ, LIMIT + 5)
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.structs import OffsetAndMetadata

    reader = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, group_id="g-behind", enable_auto_commit=False)
    await reader.start()
    try:
        tp = TopicPartition(DLQ, 0)
        reader.assign([tp])
        await reader.commit({tp: OffsetAndMetadata(10, "")})
        assert await lagging_groups(stack.bootstrap, await end_offsets(stack.bootstrap, _partitions(stack))) == ["g-behind"]
        pid = stack.broker.pid
        said = await asyncio.to_thread(_recycle, stack)
        assert len(said) == 1 and "g-behind still read" in said[0] and stack.broker.pid == pid, said

        end = (await reader.end_offsets([tp]))[tp]
        await reader.commit({tp: OffsetAndMetadata(end, "")})
        assert await lagging_groups(stack.bootstrap, await end_offsets(stack.bootstrap, _partitions(stack))) == []
    finally:
        await reader.stop()
    said = await asyncio.to_thread(_recycle, stack)
    assert "restarted it, emptied" in said[0] and stack.broker.pid != pid, said


async def test_past_the_forced_limit_the_broker_restarts_and_the_jobs_in_flight_end_once(stack):
    stack.recycle_force_batches = LIMIT + 5
    redis = connect(stack.redis_url)
    store = JobStore(redis)
    try:
        job = await _hold_a_job(store, "t-forced")
        await _fill(stack.bootstrap, DLQ, LIMIT + 1)
        said = await asyncio.to_thread(_recycle, stack)
        assert "1 job(s) are in flight" in said[0]
        await _fill(stack.bootstrap, DLQ, 5)
        pid = stack.broker.pid
        said = await asyncio.to_thread(_recycle, stack)
        assert stack.broker.pid != pid and "1 job(s) in flight ended with a retryable failed event" in said[0], said
        record = await store.load(job)
        assert record.status == JobStatus.FAILED and record.error.code == "job_lost" and record.error.retryable
        assert await store.inflight_total() == 0
    finally:
        await redis.aclose()


async def test_the_stream_processor_serves_on_after_a_restart(stack):
    """The streams process (fan-out, taps, faust's consumer) reconnects to the restarted, emptied broker and
    fans out what comes next; its groups had read everything, so the restart waited for nothing."""
    stack.env.update(FAST_STREAMS_ENV)
    stack.launch(stack.add("streams", ["streams"]))
    redis = connect(stack.redis_url)
    store = JobStore(redis)
    producer = await started_producer(stack.bootstrap)
    emitter = EventEmitter(producer, EVENTS, EventSource.WORKER)
    try:
        async def fanned_out(job: str) -> None:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                await emitter.emit(Started, job, attempt=int(time.time() * 1000), worker="w-test", tenant="t-serve",
                                   model=ModelInfo(id="m", device="cpu", dtype="float32"))
                for _ in range(10):
                    record = await store.load(job)
                    if record is not None and record.last_event_id:
                        return
                    await asyncio.sleep(0.2)
            raise TimeoutError(f"the fan-out never applied {job}")

        await fanned_out("before-" + uuid.uuid4().hex[:8])
        await _fill(stack.bootstrap, DLQ, LIMIT + 1)
        said: list[str] = []
        for _ in range(120):  # looks, until its groups have committed behind what they read
            said += await asyncio.to_thread(_recycle, stack)
            if any("restarted it, emptied" in line for line in said):
                break
            await asyncio.sleep(0.5)
        else:
            raise TimeoutError(f"the full broker was never restarted: {said}")
        await fanned_out("after-" + uuid.uuid4().hex[:8])
    finally:
        await producer.stop()
        await redis.aclose()
