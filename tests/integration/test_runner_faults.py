"""The job runner under faults, on the real broker (and a real redis-server for what the fan-out
makes of its events): a terminal send the broker does not acknowledge, and a takeover by a worker
whose clock is behind the dead one's."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from aiokafka.errors import KafkaTimeoutError

from infra.kafka import clients
from infra.kafka.codec import encode
from infra.kafka.topics import EVENTS_RAW, jobs_topic
from infra.redis.client import connect
from infra.redis.jobstore import JobStore
from schemas.enums import JobStatus, Modality
from tests.conftest import FAST_GROUP
from tests.kafka_helpers import job_events, serving, skip_backlog, started_producer, wait_until
from tests.unit.workers.test_runner import EchoHandler, job
from workers.runner import JobRunner, jobs_group

pytestmark = pytest.mark.integration

TOPIC = jobs_topic(Modality.TEXT)
GROUP = jobs_group(Modality.TEXT)
TERMINAL = {"completed", "failed", "cancelled"}


class FlakyTerminals:
    """A real producer whose next `fail` sends of a terminal event come back failed, as they do
    when the broker times out or restarts; `log` records acknowledged terminals and commits in order."""

    def __init__(self, producer, fail: int, log: list) -> None:
        self._producer = producer
        self.fail = fail
        self._log = log

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(self, topic, value, key=None, **kwargs):
        kind = json.loads(value).get("type") if topic == EVENTS_RAW else None
        if kind in TERMINAL and self.fail:
            self.fail -= 1
            failed = asyncio.get_running_loop().create_future()
            failed.set_exception(KafkaTimeoutError())
            return failed
        sent = await self._producer.send(topic, value, key=key, **kwargs)
        if kind in TERMINAL:
            sent.add_done_callback(lambda f: f.exception() or self._log.append(("acked", kind)))
        return sent

    async def send_and_wait(self, topic, value, key=None, **kwargs):
        return await (await self.send(topic, value, key=key, **kwargs))


class RecordingConsumer:
    """A real group consumer whose commits are logged (after the terminal acks they must follow)."""

    def __init__(self, consumer, log: list) -> None:
        self._consumer = consumer
        self._log = log

    def __getattr__(self, name):
        return getattr(self._consumer, name)

    async def commit(self, offsets):
        self._log.append(("commit", offsets))
        await self._consumer.commit(offsets)


def runner(bootstrap: str, *, fail: int = 0, log: list | None = None, clock=None, handler=None) -> JobRunner:
    log = log if log is not None else []
    producer = FlakyTerminals(clients.producer(bootstrap, client_id="faulty"), fail, log)
    jobs = RecordingConsumer(clients.consumer(bootstrap, group_id=GROUP, client_id="faulty", **FAST_GROUP), log)
    extra = {"clock": clock} if clock is not None else {}
    return JobRunner(handler or EchoHandler(), producer=producer, jobs=jobs,
                     control=clients.consumer(bootstrap, group_id=None, **FAST_GROUP), worker_id="w-faulty",
                     terminal_retry_s=(0.05, 0.05), rerun_after_s=0.2, **extra)


@pytest.fixture
async def jobs_producer(kafka_bootstrap):
    await skip_backlog(kafka_bootstrap, TOPIC, GROUP)
    producer = await started_producer(kafka_bootstrap)
    yield producer
    await producer.stop()


async def submit(producer, job_id: str, prompt: str = "hi"):
    return await producer.send_and_wait(TOPIC, job(job_id, prompt), key=job_id.encode())


async def test_a_terminal_send_that_fails_is_sent_again_and_counts_once_acknowledged(kafka_bootstrap, jobs_producer):
    job_id, log = f"flaky-{uuid.uuid4().hex[:6]}", []
    sent = await submit(jobs_producer, job_id)
    async with serving(runner(kafka_bootstrap, fail=2, log=log)) as (worker,):
        events = await job_events(kafka_bootstrap, EVENTS_RAW, job_id, after_commit=(GROUP, sent))
        assert worker._producer.fail == 0
    assert [e.type for e in events] == ["started", "token", "completed"]
    assert len({e.attempt for e in events}) == 1  # the same attempt: only the terminal was sent again
    first_commit = next(i for i, entry in enumerate(log) if entry[0] == "commit")
    assert ("acked", "completed") in log[:first_commit]


async def test_a_terminal_never_acknowledged_keeps_the_offset_and_the_job_runs_again(kafka_bootstrap, jobs_producer):
    job_id, other, log = f"lost-{uuid.uuid4().hex[:6]}", f"next-{uuid.uuid4().hex[:6]}", []
    sent = await submit(jobs_producer, job_id)
    # 3 sends per attempt (terminal_retry_s has 2 waits): the first attempt gives up, the second ends
    async with serving(runner(kafka_bootstrap, fail=4, log=log)) as (worker,):
        events = await job_events(kafka_bootstrap, EVENTS_RAW, job_id, after_commit=(GROUP, sent))
        later = await submit(jobs_producer, other)  # the worker is still healthy
        assert (await job_events(kafka_bootstrap, EVENTS_RAW, other, after_commit=(GROUP, later)))[-1].type == "completed"
        assert worker.in_flight == 0
    started = [e for e in events if e.type == "started"]
    terminals = [e for e in events if e.type in TERMINAL]
    assert len(started) == 2 and started[0].attempt != started[1].attempt
    assert [(e.type, e.attempt) for e in terminals] == [("completed", started[1].attempt)]
    first_commit = next(i for i, entry in enumerate(log) if entry[0] == "commit")
    assert ("acked", "completed") in log[:first_commit]  # nothing was committed while the job had not ended


async def test_a_takeover_by_a_worker_whose_clock_is_behind_still_ends_the_job(kafka_bootstrap, jobs_producer,
                                                                                redis_url):
    job_id = f"skew-{uuid.uuid4().hex[:6]}"
    sent = await submit(jobs_producer, job_id, "hold")
    first = EchoHandler()  # holds the job forever: its worker dies mid-job
    async with serving(runner(kafka_bootstrap, handler=first)):
        await wait_until(lambda: first.ran == [job_id], timeout=60)
    # the dead worker's `started` is on the log; its successor's clock is an hour behind
    second = EchoHandler()
    second.release.set()
    async with serving(runner(kafka_bootstrap, handler=second, clock=lambda: time.time() - 3600)):
        events = await job_events(kafka_bootstrap, EVENTS_RAW, job_id, after_commit=(GROUP, sent))
    started = [e for e in events if e.type == "started"]
    assert len(started) == 2 and started[1].attempt < started[0].attempt
    redis = connect(redis_url)
    try:
        store = JobStore(redis, job_ttl_s=60)
        for event in events:  # what the fan-out does with them, in log order
            await store.apply(event, encode(event), now=1.0)
        record = await store.load(job_id)
    finally:
        await redis.aclose()
    assert record.status == JobStatus.COMPLETED and record.text == "hold" and record.terminal_id
