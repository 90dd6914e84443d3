"""The moderation gate between genloom.events.raw and genloom.events, on the real broker."""

from __future__ import annotations

import json

import pytest

from infra.kafka.codec import encode
from infra.kafka.emitter import EventEmitter
from infra.moderation.moderator import blocklist_moderator
from infra.kafka.clients import ensure_topics
from infra.kafka.topics import CONTROL, EVENTS, TopicSpec
from schemas import EventSource
from schemas.events import Completed, Started, TokenDelta, Usage, ModelInfo
from tests.conftest import FAST_GROUP
from tests.kafka_helpers import job_events, read_topic, serving
from workers.moderation.gate import ModerationGate
from workers.wiring import gate_runner

pytestmark = pytest.mark.integration
#: this module's gate has a group of its own: the session's gate (tests/conftest.py) runs in the default one
GROUP = "genloom-moderation-test-runner"
#: and its own raw topic: the session's gate, which lets every event through, must not release these jobs too
RAW = "genloom.events.raw.gate-test"
MODEL = ModelInfo(id="m", device="cpu", dtype="float32")


@pytest.fixture(scope="module")
async def gate(kafka_bootstrap):
    await ensure_topics(kafka_bootstrap, [TopicSpec(RAW, 8, "job_id", "JobEvent", "this module's worker output")])
    runner = gate_runner(ModerationGate(blocklist_moderator(["forbidden"]), window_chars=16),
                        bootstrap=kafka_bootstrap, group=GROUP, source=RAW, **FAST_GROUP)
    async with serving(runner):
        yield runner


async def test_blocked_output_ends_with_content_filter_and_cancels_the_worker(kafka_bootstrap, gate, producer):
    worker = EventEmitter(producer, RAW, EventSource.WORKER)
    await worker.emit(Started, "mod-1", 5, worker="w", model=MODEL)
    for text in ["Once upon ", "a time there ", "was a forb", "idden word ", "and more"]:
        await worker.emit(TokenDelta, "mod-1", 5, text=text, tokens=2)
    last = worker.build(Completed, "mod-1", 5, usage=Usage(completion_tokens=10))
    sent = await producer.send_and_wait(RAW, encode(last), key=b"mod-1")
    released = await job_events(kafka_bootstrap, EVENTS, "mod-1", after_commit=(GROUP, sent))
    types = [e.type for e in released]
    assert types[0] == "started" and types[-2:] == ["moderation", "completed"]
    assert released[-1].finish_reason.value == "content_filter" and released[-1].source.value == "moderation"
    text = "".join(e.text for e in released if e.type == "token")
    assert "forbidden" not in text and "forb" not in text and text.startswith("Once upon")
    cancels = await read_topic(kafka_bootstrap, CONTROL, until=lambda ms: any(m.key == b"mod-1" for m in ms))
    cancel = next(json.loads(m.value) for m in cancels if m.key == b"mod-1")
    assert cancel["reason"] == "content_filter"


async def test_clean_output_passes_whole_and_in_order(kafka_bootstrap, gate, producer):
    worker = EventEmitter(producer, RAW, EventSource.WORKER)
    pieces = ["Hello ", "there, ", "how are ", "you ", "today?"]
    for text in pieces:
        await worker.emit(TokenDelta, "mod-2", 1, text=text, tokens=1)
    await worker.emit(Completed, "mod-2", 1, text="".join(pieces), usage=Usage(completion_tokens=5))
    released = await job_events(kafka_bootstrap, EVENTS, "mod-2")
    assert [e.text for e in released if e.type == "token"] == pieces
    assert [e.seq for e in released] == list(range(6)) and released[-1].finish_reason.value == "stop"
