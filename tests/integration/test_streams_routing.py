"""Routing, the preparation chain's last step, in the real streams process against the real broker."""

from __future__ import annotations

import json

import pytest

from infra.kafka.codec import decode_request
from infra.kafka.signing import SIGNATURE_HEADER, refusal, signature_headers
from infra.kafka.topics import DLQ, EVENTS, REQUESTS, jobs_topic
from schemas import parse_request
from schemas.requests import scoped_job_id
from tests.conftest import REQUEST_SIGNING_KEY
from tests.kafka_helpers import job_events, read_topic

pytestmark = pytest.mark.integration


def _json(value: bytes) -> dict:
    try:
        data = json.loads(value)
    except ValueError:  # other tests put garbage on these topics on purpose (UnicodeDecodeError included)
        return {}
    return data if isinstance(data, dict) else {}


def _job_id(value: bytes) -> str | None:
    data = _json(value)
    return data.get("client_job_id") or data.get("job_id")  # routed jobs are qualified by tenant


def _has(job_id: str):
    return lambda messages: any(_job_id(m.value) == job_id for m in messages)


def signed(body: dict, *headers: tuple[str, bytes]) -> list[tuple[str, bytes]]:
    """The headers a producer of its own sends a request with: its signature (and `headers`)."""
    return [*headers, *signature_headers(REQUEST_SIGNING_KEY, parse_request(body))]


async def test_valid_request_is_routed_and_accepted(kafka_bootstrap, streams_process, producer):
    body = {"job_id": "rt-ok", "session": "sess-1", "modality": "video", "params": {"prompt": "waves"}}
    await producer.send_and_wait(REQUESTS, json.dumps(body).encode(), key=b"sess-1", headers=signed(body))
    routed = await read_topic(kafka_bootstrap, jobs_topic("video"), until=_has("rt-ok"))
    msg = next(m for m in routed if _job_id(m.value) == "rt-ok")
    assert msg.key == b"sess-1" and json.loads(msg.value)["params"]["prompt"] == "waves"
    # qualified by its tenant (the default one) and signed again as such: the workers run it
    routed_job = decode_request(msg.value)
    assert routed_job.job_id == scoped_job_id("default", "rt-ok") and routed_job.client_job_id == "rt-ok"
    assert refusal(REQUEST_SIGNING_KEY, routed_job, msg.headers) is None
    assert dict(msg.headers)[SIGNATURE_HEADER] != dict(signed(body))[SIGNATURE_HEADER]
    accepted = await read_topic(kafka_bootstrap, EVENTS, until=_has("rt-ok"))
    first = next(json.loads(m.value) for m in accepted if _job_id(m.value) == "rt-ok")
    assert first["type"] == "accepted" and first["source"] == "streams" and first["modality"] == "video"


async def test_gateway_accepted_header_suppresses_a_second_accepted(kafka_bootstrap, streams_process, producer):
    body = {"job_id": "rt-gw", "modality": "speech", "params": {"input": "hi"}}
    await producer.send_and_wait(REQUESTS, json.dumps(body).encode(), key=b"rt-gw",
                                 headers=signed(body, ("genloom-accepted", b"1")))
    await read_topic(kafka_bootstrap, jobs_topic("speech"), until=_has("rt-gw"))
    later = {"job_id": "rt-gw-after", "modality": "speech", "params": {"input": "hi"}}
    await producer.send_and_wait(REQUESTS, json.dumps(later).encode(), key=b"rt-gw",
                                 headers=signed(later))  # same partition
    internal = scoped_job_id("default", "rt-gw")  # `prepared` names the job by its internal id only

    def both(messages) -> bool:  # events of the two jobs lie on different partitions: read until both are in
        return _has("rt-gw-after")(messages) and any(_json(m.value).get("job_id") == internal for m in messages)

    messages = await read_topic(kafka_bootstrap, EVENTS, until=both)
    # only what preparation did: no second `accepted` (it would come before `prepared`, on the same
    # partition of genloom.events, so it would be in by now)
    assert [_json(m.value)["type"] for m in messages if _json(m.value).get("job_id") == internal] == ["prepared"]


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
    await producer.send_and_wait(REQUESTS, json.dumps(good).encode(), key=b"rt-alive", headers=signed(good))
    await read_topic(kafka_bootstrap, jobs_topic("text"), until=_has("rt-alive"))
    assert streams_process.poll() is None


async def test_unsigned_or_forged_requests_are_not_forwarded_and_fail(kafka_bootstrap, streams_process, producer):
    """With a signing key, a request must carry the gateway's signature for its own tenant."""
    unsigned = {"job_id": "rt-unsigned", "tenant": "victim", "modality": "text",
                "params": {"messages": [{"role": "user", "content": "hi"}]}}
    forged = {**unsigned, "job_id": "rt-forged"}
    await producer.send_and_wait(REQUESTS, json.dumps(unsigned).encode(), key=b"rt-unsigned")
    # signed for the attacker's own tenant, then published as the victim's
    await producer.send_and_wait(REQUESTS, json.dumps(forged).encode(), key=b"rt-forged",
                                 headers=signed({**forged, "tenant": "attacker"}))
    for job_id in ("rt-unsigned", "rt-forged"):
        events = await job_events(kafka_bootstrap, EVENTS, job_id)
        assert [e.type for e in events] == ["failed"] and events[0].code.value == "invalid_signature"
    good = {**unsigned, "job_id": "rt-signed-after"}
    await producer.send_and_wait(REQUESTS, json.dumps(good).encode(), key=b"rt-forged", headers=signed(good))
    routed = await read_topic(kafka_bootstrap, jobs_topic("text"), until=_has("rt-signed-after"))
    assert not {"rt-unsigned", "rt-forged"} & {_job_id(m.value) for m in routed}
    letters = await read_topic(kafka_bootstrap, DLQ, until=lambda ms: {"rt-unsigned", "rt-forged"} <= {
        json.loads(m.value).get("job_id") for m in ms})
    assert {json.loads(m.value)["code"] for m in letters
            if json.loads(m.value).get("job_id") in ("rt-unsigned", "rt-forged")} == {"invalid_signature"}


async def test_broker_down_gives_a_clear_error():
    from infra.kafka.clients import BrokerUnavailable, start_client, producer as make_producer
    from infra.procs import free_port

    bootstrap = f"127.0.0.1:{free_port()}"
    with pytest.raises(BrokerUnavailable) as info:
        await start_client(make_producer(bootstrap), bootstrap, timeout=5)
    assert bootstrap in str(info.value) and "GENLOOM_KAFKA_BOOTSTRAP" in str(info.value)


async def test_hostile_prompts_are_redacted_or_passed_and_a_job_the_stage_cannot_redact_fails(
        kafka_bootstrap, streams_process, producer):
    """Any script, emoji, a very long prompt, an empty system message and control characters all get
    through (redacted where they hold personal data); a prompt that redaction would push over its
    limit fails with redaction_failed, and the jobs polled with it go on."""
    bodies = {
        "bad-scripts": {"modality": "text", "params": {"messages": [
            {"role": "system", "content": ""},
            {"role": "user", "content": "日本語 العربية русский 🎉👩‍👩‍👧 mail ada@example.org \u0000\u0001\u001f\ufffd"}]}},
        "bad-long": {"modality": "text", "params": {"messages": [
            {"role": "user", "content": "lorem ipsum dolor " * 6000 + " card 4111 1111 1111 1111"}]}},
        "bad-overflow": {"modality": "image", "params": {"prompt": " ".join(f"a{i}@b.co" for i in range(560))[:4000]}},
        "bad-after": {"modality": "video", "params": {"prompt": "waves"}},
    }
    for job_id, body in bodies.items():
        body["job_id"] = job_id
        await producer.send(REQUESTS, json.dumps(body).encode(), key=job_id.encode(), headers=signed(body))
    await producer.flush()
    scripts = await read_topic(kafka_bootstrap, jobs_topic("text"), until=lambda ms: _has("bad-scripts")(ms) and
                               _has("bad-long")(ms), timeout=120)
    sent = {parse_request(m.value).client_job_id: parse_request(m.value) for m in scripts
            if _job_id(m.value) in ("bad-scripts", "bad-long")}
    assert sent["bad-scripts"].params.messages[1].content.startswith("日本語 العربية русский 🎉👩‍👩‍👧 mail <EMAIL_1> \u0000")
    assert sent["bad-long"].params.messages[0].content.endswith("card <CARD_1>")
    failed = await job_events(kafka_bootstrap, EVENTS, scoped_job_id("default", "bad-overflow"))
    assert failed[-1].type == "failed" and failed[-1].code.value == "redaction_failed"
    await read_topic(kafka_bootstrap, jobs_topic("video"), until=_has("bad-after"))
    assert streams_process.poll() is None
