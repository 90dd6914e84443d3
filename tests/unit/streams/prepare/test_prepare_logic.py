"""The preparation processor's pure parts: decode, the chain, and what is published per item."""

from __future__ import annotations

import json

from infra.kafka.signing import SIGNATURE_HEADER, refusal, signature_headers
from infra.kafka.topics import ACCEPTED_HEADER, DLQ, EVENTS, EVENTS_RAW
from infra.settings.streams import PrivacySettings
from schemas import parse_event, parse_request
from schemas.enums import ErrorCode, EventSource
from schemas.events import Completed, MemoryUse, Started
from schemas.requests import scoped_job_id
from streams.prepare.chain import run_chain
from streams.prepare.logic import (PREPARED_HEADER, WITHHELD, Decoded, Polled, awaiting_open, decode, plan, rejected,
                                   replay_writes)
from streams.privacy.engine import PiiAnalyzer
from streams.privacy.stage import PrivacyStage
from streams.stages import Answered

KEY = b"k"


def polled(body: dict, *headers) -> Polled:
    request = parse_request(body)
    return Polled("genloom.requests", 0, 7, request.key.encode(), json.dumps(body).encode(),
                  [*headers, *signature_headers(KEY, request)])


def chat(job_id: str, text: str, tenant: str = "t") -> dict:
    """A chat as the gateway publishes it: qualified (the internal id scoped by tenant, and the tenant's id)."""
    return {"job_id": scoped_job_id(tenant, job_id), "client_job_id": job_id, "tenant": tenant, "modality": "text",
            "params": {"messages": [{"role": "user", "content": text}]}}


def decoded(body: dict, *headers) -> Decoded:
    d = decode(polled(body, *headers), max_bytes=1 << 20, consumer="c", signing_key=KEY)
    assert isinstance(d, Decoded)
    return d


def privacy(**settings) -> PrivacyStage:
    return PrivacyStage(PiiAnalyzer(presidio=False), None, PrivacySettings(**settings))


def events(outs):
    return [parse_event(o.value) for o in outs if o.topic in (EVENTS, EVENTS_RAW)]


async def test_a_redacted_job_is_re_signed_and_reported_without_values():
    d = decoded(chat("j1", "card 4111 1111 1111 1111"), (ACCEPTED_HEADER, b"1"))
    spent = await run_chain([privacy()], [d.item])
    outs = plan(d, stages=["privacy"], stage_ms=spent, output="jobs", signing_key=KEY, moderated=True,
                polled_ts=1700000000.25)
    [job] = [o for o in outs if o.topic == "genloom.jobs.text"]
    sent = parse_request(job.value)
    assert sent.params.messages[0].content == "card <CARD_1>" and b"4111" not in job.value
    assert refusal(KEY, sent, job.headers) is None  # signed anew for the changed request
    [prepared] = events(outs)  # the gateway published accepted
    assert prepared.type == "prepared" and prepared.redactions == {"CARD": 1} and prepared.stages == ["privacy"]
    assert "privacy" in prepared.stage_ms and prepared.seq == 1 and prepared.source == EventSource.STREAMS
    assert prepared.polled_ts == 1700000000.25  # when the batch was polled: the hop table's third column


async def test_an_unchanged_job_keeps_its_signature_and_gets_accepted_when_the_gateway_did_not_send_it():
    d = decoded(chat("j2", "hello there"))
    await run_chain([privacy()], [d.item])
    outs = plan(d, stages=["privacy"], stage_ms={}, output="jobs", signing_key=KEY, moderated=True)
    job = next(o for o in outs if o.topic == "genloom.jobs.text")
    assert dict(job.headers)[SIGNATURE_HEADER] == dict(polled(chat("j2", "hello there")).headers)[SIGNATURE_HEADER]
    assert [e.type for e in events(outs)] == ["accepted", "prepared"]


async def test_tenant_with_redaction_off_passes_through_unchanged():
    d = decoded(chat("j3", "card 4111 1111 1111 1111", tenant="raw"))
    await run_chain([privacy(redact_off_tenants="raw")], [d.item])
    assert d.item.request is d.original and d.item.redactions == {}


class Exploding:
    name = "privacy"

    async def run(self, items):
        for item in items:
            if "boom" in item.request.params.messages[0].content:
                raise RuntimeError("a bug")


async def test_a_stage_that_raises_fails_only_that_job_with_a_clear_code():
    bad, good = decoded(chat("j4", "boom")), decoded(chat("j5", "fine"))
    await run_chain([Exploding()], [bad.item, good.item])
    assert bad.item.end.code == ErrorCode.REDACTION_FAILED and good.item.pending
    outs = plan(bad, stages=["privacy"], stage_ms={}, output="jobs", signing_key=KEY, moderated=True)
    assert [e.type for e in events(outs)] == ["accepted", "failed"]
    assert not any(o.topic.startswith("genloom.jobs.") for o in outs)


def test_an_answered_job_is_published_on_the_moderated_topic_numbered_after_accepted():
    d = decoded(chat("j6", "hi"), (ACCEPTED_HEADER, b"1"))
    d.item.end = Answered([
        Started(job_id="j6", seq=0, source=EventSource.STREAMS, worker="cache",
                model={"id": "m", "device": "cpu", "dtype": "float32"}),
        Completed(job_id="j6", seq=1, source=EventSource.STREAMS, text="cached"),
    ])
    moderated = plan(d, stages=["cache"], stage_ms={}, output="jobs", signing_key=KEY, moderated=True)
    assert [(o.topic, parse_event(o.value).seq) for o in moderated] == [(EVENTS_RAW, 1), (EVENTS_RAW, 2)]
    assert {o.topic for o in plan(d, stages=[], stage_ms={}, output="jobs", signing_key=KEY, moderated=False)} == {
        EVENTS}


def _answered(job: str, *headers) -> Decoded:
    d = decoded(chat(job, "hi"), *headers)
    d.item.end = Answered([
        Started(job_id=d.item.request.job_id, seq=0, source=EventSource.STREAMS, worker="cache",
                model={"id": "m", "device": "cpu", "dtype": "float32"}),
        Completed(job_id=d.item.request.job_id, seq=1, source=EventSource.STREAMS, text="cached"),
    ])
    return d


def test_a_hit_goes_straight_to_its_replay_log_only_once_the_log_is_opened_and_never_when_moderated():
    by_gateway = _answered("j8", (ACCEPTED_HEADER, b"1"))  # its accepted travels through the fan-out
    by_producer = _answered("j9")  # no gateway: the answer starts with this processor's accepted
    prepared = decoded(chat("j10", "hi"), (ACCEPTED_HEADER, b"1"))  # no answer: nothing straight to Redis
    planned = [plan(d, stages=["cache"], stage_ms={}, output="jobs", signing_key=KEY, moderated=False)
               for d in (by_gateway, by_producer, prepared)]
    assert awaiting_open(planned) == [by_gateway.item.request.job_id]
    direct = replay_writes(planned, opened=set())
    assert [(e.job_id, e.type.value, e.seq) for e, _ in direct] == [
        (by_producer.item.request.job_id, "accepted", 0), (by_producer.item.request.job_id, "started", 1),
        (by_producer.item.request.job_id, "completed", 2)]
    assert all(parse_event(payload) == event for event, payload in direct)  # the bytes Kafka gets too
    both = replay_writes(planned, opened={by_gateway.item.request.job_id})
    assert [e.job_id for e, _ in both][:2] == [by_gateway.item.request.job_id] * 2 and len(both) == 5
    moderated = [plan(d, stages=["cache"], stage_ms={}, output="jobs", signing_key=KEY, moderated=True)
                 for d in (by_gateway, by_producer)]
    assert awaiting_open(moderated) == [] and replay_writes(moderated, opened={by_gateway.item.request.job_id}) == []


async def test_a_split_out_stage_forwards_its_report_and_the_last_processor_merges_it():
    first = decoded(chat("j7", "mail ada@example.com"))
    await run_chain([privacy()], [first.item])
    [forwarded] = [o for o in plan(first, stages=["privacy"], stage_ms={"privacy": 2.0}, output="genloom.stage.1",
                                   signing_key=KEY, moderated=True) if o.topic == "genloom.stage.1"]
    assert dict(forwarded.headers)[ACCEPTED_HEADER] == b"1"
    nxt = decode(Polled("genloom.stage.1", 0, 0, forwarded.key, forwarded.value, forwarded.headers),
                 max_bytes=1 << 20, consumer="c", signing_key=KEY)
    assert isinstance(nxt, Decoded) and dict(nxt.item.headers)[PREPARED_HEADER]
    outs = plan(nxt, stages=["cache"], stage_ms={"cache": 1.0}, output="jobs", signing_key=KEY, moderated=True)
    [prepared] = events(outs)
    assert prepared.stages == ["privacy", "cache"] and prepared.stage_ms == {"privacy": 2.0, "cache": 1.0}


async def test_memories_the_enrichment_stage_used_are_reported_through_split_out_processors():
    first = decoded(chat("j8", "what should I cook?"))
    first.item.memories = [MemoryUse(id="f1", kind="fact", text="The user is vegan.", score=0.7, similarity=0.8,
                                     supersedes=["f0"])]
    [forwarded] = [o for o in plan(first, stages=["enrichment"], stage_ms={"enrichment": 2.0},
                                   output="genloom.stage.1", signing_key=KEY, moderated=True)
                   if o.topic == "genloom.stage.1"]
    nxt = decode(Polled("genloom.stage.1", 0, 0, forwarded.key, forwarded.value, forwarded.headers),
                 max_bytes=1 << 20, consumer="c", signing_key=KEY)
    nxt.item.memories = [MemoryUse(id="j3", kind="interaction", text="Earlier ...", score=0.3)]
    [prepared] = events(plan(nxt, stages=["cache"], stage_ms={}, output="jobs", signing_key=KEY, moderated=True))
    assert [(m.id, m.supersedes) for m in prepared.memories] == [("f1", ["f0"]), ("j3", [])]


async def test_a_malformed_memory_in_an_earlier_report_is_left_out():
    d = decoded(chat("j9", "hi"), (ACCEPTED_HEADER, b"1"),
                (PREPARED_HEADER, json.dumps({"stages": ["enrichment"], "memories": [{"id": 5}]}).encode()))
    [prepared] = events(plan(d, stages=[], stage_ms={}, output="jobs", signing_key=KEY, moderated=True))
    assert prepared.stages == ["enrichment"] and prepared.memories == []


def test_a_rejected_request_fails_and_its_dead_letter_withholds_the_prompt():
    p = Polled("genloom.requests", 0, 1, b"j8", b'{"job_id": "j8", "modality": "text", "params": '
               b'{"messages": [{"role": "user", "content": "ada@example.com"}], "max_tokens": 0}}', [])
    d = decode(p, max_bytes=1 << 20, consumer="c", signing_key=None)
    outs = rejected(d, p.key, withhold=True)
    letter = json.loads(next(o.value for o in outs if o.topic == DLQ))
    assert letter["payload"] == WITHHELD and letter["payload_bytes"] == len(p.value)
    assert parse_event(next(o.value for o in outs if o.topic == EVENTS)).code == ErrorCode.INVALID_PARAMETER
