"""Workers run only requests the gateway signed (GENLOOM_REQUEST_SIGNING_KEY), on the real broker:
a message written straight to a job topic cannot run under a tenant it was not signed for."""

from __future__ import annotations

import uuid

import pytest

from infra.kafka import clients
from infra.kafka.codec import encode
from infra.kafka.signing import signature_headers
from infra.kafka.topics import EVENTS_RAW, jobs_topic
from schemas import parse_request
from schemas.enums import Modality
from tests.conftest import FAST_GROUP
from tests.kafka_helpers import job_events, serving, skip_backlog, started_producer
from tests.unit.workers.test_runner import EchoHandler
from workers.runner import JobRunner, jobs_group

pytestmark = pytest.mark.integration

TOPIC = jobs_topic(Modality.TEXT)
GROUP = jobs_group(Modality.TEXT)
KEY = b"worker-signing-key"


def request(job_id: str, tenant: str):
    return parse_request({"job_id": job_id, "tenant": tenant, "modality": "text",
                          "params": {"messages": [{"role": "user", "content": "hi"}]}})


def signed_runner(bootstrap: str, handler: EchoHandler) -> JobRunner:
    return JobRunner(handler, producer=clients.producer(bootstrap, client_id="signed"),
                     jobs=clients.consumer(bootstrap, group_id=GROUP, client_id="signed", **FAST_GROUP),
                     control=clients.consumer(bootstrap, group_id=None, **FAST_GROUP), worker_id="w-signed",
                     signing_key=KEY)


@pytest.fixture
async def jobs_producer(kafka_bootstrap):
    await skip_backlog(kafka_bootstrap, TOPIC, GROUP)
    producer = await started_producer(kafka_bootstrap)
    yield producer
    await producer.stop()


async def test_a_forged_tenant_fails_with_invalid_signature_and_generates_nothing(kafka_bootstrap, jobs_producer):
    tag = uuid.uuid4().hex[:6]
    forged, unsigned, good = f"forged-{tag}", f"unsigned-{tag}", f"signed-{tag}"
    # the attacker signs (or has signed) a job for its own tenant and publishes it as the victim's
    victim_job = request(forged, "victim")
    sent = {
        forged: await jobs_producer.send_and_wait(TOPIC, encode(victim_job), key=forged.encode(),
                                                  headers=signature_headers(KEY, request(forged, "attacker"))),
        unsigned: await jobs_producer.send_and_wait(TOPIC, encode(request(unsigned, "victim")), key=unsigned.encode()),
        good: await jobs_producer.send_and_wait(TOPIC, encode(request(good, "victim")), key=good.encode(),
                                                headers=signature_headers(KEY, request(good, "victim"))),
    }
    handler = EchoHandler()
    async with serving(signed_runner(kafka_bootstrap, handler)):
        events = {job_id: await job_events(kafka_bootstrap, EVENTS_RAW, job_id, after_commit=(GROUP, record))
                  for job_id, record in sent.items()}
    for job_id in (forged, unsigned):
        assert [(e.type, e.code.value) for e in events[job_id]] == [("failed", "invalid_signature")]
    assert "not signed" in events[unsigned][0].message
    assert [e.type for e in events[good]] == ["started", "token", "completed"]
    assert handler.ran == [good]  # nothing was generated for the others
