"""The routing stream processor (a real faust worker) against the real broker."""

from __future__ import annotations

import json

import pytest

from infra.kafka.topics import DLQ, EVENTS, REQUESTS, jobs_topic
from tests.kafka_helpers import job_events, read_topic

pytestmark = pytest.mark.integration


def _job_id(value: bytes) -> str | None:
    try:
        data = json.loads(value)
    except ValueError:  # other tests put garbage on these topics on purpose
        return None
    return data.get("job_id") if isinstance(data, dict) else None


def _has(job_id: str):
    return lambda messages: any(_job_id(m.value) == job_id for m in messages)


async def test_valid_request_is_routed_and_accepted(kafka_bootstrap, streams_process, producer):
    body = {"job_id": "rt-ok", "session": "sess-1", "modality": "video", "params": {"prompt": "waves"}}
    await producer.send_and_wait(REQUESTS, json.dumps(body).encode(), key=b"sess-1")
    routed = await read_topic(kafka_bootstrap, jobs_topic("video"), until=_has("rt-ok"))
    msg = next(m for m in routed if _job_id(m.value) == "rt-ok")
    assert msg.key == b"sess-1" and json.loads(msg.value)["params"]["prompt"] == "waves"
    accepted = await read_topic(kafka_bootstrap, EVENTS, until=_has("rt-ok"))
    first = next(json.loads(m.value) for m in accepted if _job_id(m.value) == "rt-ok")
    assert first["type"] == "accepted" and first["source"] == "streams" and first["modality"] == "video"


async def test_gateway_accepted_header_suppresses_a_second_accepted(kafka_bootstrap, streams_process, producer):
    body = {"job_id": "rt-gw", "modality": "speech", "params": {"input": "hi"}}
    await producer.send_and_wait(REQUESTS, json.dumps(body).encode(), key=b"rt-gw",
                                 headers=[("genloom-accepted", b"1")])
    await read_topic(kafka_bootstrap, jobs_topic("speech"), until=_has("rt-gw"))
    later = {"job_id": "rt-gw-after", "modality": "speech", "params": {"input": "hi"}}
    await producer.send_and_wait(REQUESTS, json.dumps(later).encode(), key=b"rt-gw")  # same partition
    messages = await read_topic(kafka_bootstrap, EVENTS, until=_has("rt-gw-after"))
    assert not any(_job_id(m.value) == "rt-gw" for m in messages)


async def test_invalid_and_garbage_go_to_dlq_and_the_job_fails(kafka_bootstrap, streams_process, producer):
    bad = {"job_id": "rt-bad", "modality": "image", "params": {"prompt": "x", "steps": 0}}
    await producer.send_and_wait(REQUESTS, b"\x00not json at all", key=b"rt-garbage")
    await producer.send_and_wait(REQUESTS, json.dumps(bad).encode(), key=b"rt-bad")
    failed = await job_events(kafka_bootstrap, EVENTS, "rt-bad")
    assert failed[-1].type == "failed" and failed[-1].code.value == "invalid_parameter"
    assert "params.steps" in failed[-1].message
    letters = await read_topic(kafka_bootstrap, DLQ, until=lambda ms: sum(
        json.loads(m.value)["consumer"] == "genloom-streams" for m in ms) >= 2)
    codes = {json.loads(m.value)["key"]: json.loads(m.value)["code"] for m in letters
             if json.loads(m.value)["consumer"] == "genloom-streams"}
    assert codes["rt-garbage"] == "invalid_json" and codes["rt-bad"] == "invalid_parameter"
    # the processor is still alive and routing
    good = {"job_id": "rt-alive", "modality": "text", "params": {"messages": [{"role": "user", "content": "hi"}]}}
    await producer.send_and_wait(REQUESTS, json.dumps(good).encode(), key=b"rt-alive")
    await read_topic(kafka_bootstrap, jobs_topic("text"), until=_has("rt-alive"))
    assert streams_process.poll() is None


async def test_broker_down_gives_a_clear_error():
    from infra.kafka.clients import BrokerUnavailable, start_client, producer as make_producer
    from infra.procs import free_port

    bootstrap = f"127.0.0.1:{free_port()}"
    with pytest.raises(BrokerUnavailable) as info:
        await start_client(make_producer(bootstrap), bootstrap, timeout=5)
    assert bootstrap in str(info.value) and "GENLOOM_KAFKA_BOOTSTRAP" in str(info.value)
