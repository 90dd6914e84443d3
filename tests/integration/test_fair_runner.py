"""Fair scheduling on the real broker: one tenant's backlog does not delay another tenant's job by
more than one batch (the runner reads ahead and hands free slots out by round robin)."""

from __future__ import annotations

import uuid

import pytest

from infra.kafka.topics import EVENTS_RAW, jobs_topic
from schemas.enums import Modality
from tests.conftest import FAST_GROUP
from tests.kafka_helpers import job_events, serving, skip_backlog, started_producer, wait_until
from tests.unit.workers.test_runner import EchoHandler, job
from workers.runner import jobs_group
from workers.wiring import job_runner

pytestmark = pytest.mark.integration

TOPIC = jobs_topic(Modality.TEXT)
GROUP = jobs_group(Modality.TEXT)


async def test_fifty_queued_jobs_of_one_tenant_do_not_delay_another_tenants_job(kafka_bootstrap):
    await skip_backlog(kafka_bootstrap, TOPIC, GROUP)
    run = uuid.uuid4().hex[:6]
    backlog = [f"fair-a{i}-{run}" for i in range(50)]
    single = f"fair-b-{run}"
    producer = await started_producer(kafka_bootstrap)
    try:
        for job_id in backlog:  # the backlog holds its slots until released, however the polls split it
            await producer.send_and_wait(TOPIC, job(job_id, "hold", tenant="tenant-a"), key=job_id.encode())
        sent = await producer.send_and_wait(TOPIC, job(single, tenant="tenant-b"), key=single.encode())
    finally:
        await producer.stop()
    handler = EchoHandler()
    worker = job_runner(handler, bootstrap=kafka_bootstrap, max_concurrency=4, read_ahead=64, **FAST_GROUP)
    async with serving(worker):
        # everything is read: b's job has started, or waits in the read-ahead behind a full batch of a's
        await wait_until(lambda: single in handler.ran or worker.queued == 51 - 4, timeout=60)
        handler.release.set()
        events = await job_events(kafka_bootstrap, EVENTS_RAW, single, after_commit=(GROUP, sent))
        await wait_until(lambda: len(handler.ran) == 51, timeout=60)
    assert [e.type for e in events] == ["started", "token", "completed"]
    assert handler.ran.index(single) <= 4  # at most one batch (the capacity) of a's jobs before it
