"""The moderation gate writes what it releases into the jobs' replay logs itself (`ReplayWriter`), on the
real broker and a real Redis: the log holds every released event once, in order, the records it published
carry the mark the fan-out passes them by, and a gate that dies before its write loses nothing (its
successor writes them)."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import TopicPartition

from infra.kafka.codec import encode
from infra.kafka.clients import ensure_topics
from infra.kafka.consume import Record
from infra.kafka.emitter import EventEmitter
from infra.kafka.topics import APPLIED_HEADER, EVENTS, TopicSpec
from infra.moderation.moderator import blocklist_moderator
from infra.redis import keys
from infra.settings.streams import FanoutSettings, WebhookSettings
from schemas import EventSource
from schemas.events import Completed, ModelInfo, Started, TokenDelta, Usage
from infra.fanout.writer import ReplayWriter
from streams.fanout.agents import FanoutTap
from tests.conftest import FAST_GROUP
from tests.kafka_helpers import wait_committed
from workers.moderation.gate import ModerationGate
from workers.wiring import gate_runner

pytestmark = pytest.mark.integration

#: this module's own raw topic and groups: the session's gate must not release these jobs too
RAW = "genloom.events.raw.replay-test"
MODEL = ModelInfo(id="m", device="cpu", dtype="float32")
PIECES = ["Hello ", "there, ", "how are ", "you ", "today?"]


@pytest.fixture(scope="module")
async def raw_topic(kafka_bootstrap):
    await ensure_topics(kafka_bootstrap, [TopicSpec(RAW, 4, "job_id", "JobEvent", "this module's worker output")])
    return RAW


async def _work(producer, job: str):
    """A worker's clean output for `job` on the raw topic; the record metadata of its last event."""
    worker = EventEmitter(producer, RAW, EventSource.WORKER)
    await worker.emit(Started, job, 3, worker="w", model=MODEL)
    for text in PIECES:
        await worker.emit(TokenDelta, job, 3, text=text, tokens=1)
    last = worker.build(Completed, job, 3, text="".join(PIECES), usage=Usage(completion_tokens=len(PIECES)))
    return await producer.send_and_wait(RAW, encode(last), key=job.encode())


async def _log(redis, job: str) -> list[tuple[str, str]]:
    """The job's replay log: (entry id, type) per entry."""
    return [(i.decode(), f[b"type"].decode()) for i, f in await redis.xrange(keys.replay_log(job))]


async def _drain(runner) -> None:
    """Run a gate until it has read everything there is, then stop it."""
    await runner.start()
    try:
        await runner.run(burst=True)
    finally:
        await runner.stop()


def _gate(bootstrap: str, group: str, replay):
    return gate_runner(ModerationGate(blocklist_moderator(["forbidden"]), window_chars=16), bootstrap=bootstrap,
                       group=group, source=RAW, commit_gap_s=0, replay=replay, **FAST_GROUP)


async def test_released_events_reach_the_replay_log_from_the_gate_and_the_fan_out_passes_them_by(
        kafka_bootstrap, raw_topic, producer, redis_url, edge_redis):
    job, group = f"replay-{uuid.uuid4().hex[:8]}", f"replay-gate-{uuid.uuid4().hex[:6]}"
    last = await _work(producer, job)
    expected = ["started"] + ["token"] * len(PIECES) + ["completed"]
    writer = Noting(redis_url, consumer=group)
    runner = _gate(kafka_bootstrap, group, writer)
    await _drain(runner)
    await wait_committed(kafka_bootstrap, group, last)
    assert [t for _, t in await _log(edge_redis, job)] == expected
    assert [i for i, _ in await _log(edge_redis, job)] == [f"{n}-0" for n in range(1, len(expected) + 1)]

    # what it published (the records as the broker acknowledged them) carries the mark; the fan-out's tap passes those records by, and applies the same event
    # without the mark (dropped there: the job has ended, the script saw it)
    published = [record for record in writer.records if record.key == job.encode()]
    assert len(published) == len(expected) and all((APPLIED_HEADER, b"1") in r.headers for r in published)
    assert all(r.topic == EVENTS for r in published)
    # webhooks off: this tap needs no deliverer (the session's would also drain what other tests owe)
    tap = FanoutTap("replay-test-fanout", kafka_bootstrap, redis_url, FanoutSettings(), WebhookSettings(secret=None))
    await tap.open()
    try:
        records = [Record(TopicPartition(r.topic, r.partition), r.offset, r.key, r.value, r.headers)
                   for r in published]
        await tap.handle(records)
        assert await edge_redis.hget(keys.dedupe(job), "dropped") is None
        unmarked = records[-1]
        await tap.handle([Record(unmarked.tp, unmarked.offset, unmarked.key, unmarked.value, ())])
        assert await edge_redis.hget(keys.dedupe(job), "dropped:after_terminal") == b"1"
    finally:
        await tap.close()
    assert len(await _log(edge_redis, job)) == len(expected)


class Noting(ReplayWriter):
    """The real writer, noting the records it wrote for."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.records = []

    async def write(self, released):
        self.records += [record for record, _ in released]
        return await super().write(released)


class DiesBeforeWriting(ReplayWriter):
    """The gate's process dying once it sent what it released, before the write."""

    async def write(self, released):
        raise RuntimeError("killed before the write")


async def test_a_gate_that_dies_before_its_write_loses_nothing(kafka_bootstrap, raw_topic, producer, redis_url,
                                                               edge_redis):
    job, group = f"replay-{uuid.uuid4().hex[:8]}", f"replay-gate-{uuid.uuid4().hex[:6]}"
    last = await _work(producer, job)
    first = _gate(kafka_bootstrap, group, DiesBeforeWriting(redis_url, consumer=group))
    await first.start()
    with pytest.raises(RuntimeError, match="killed"):
        await first.run(burst=True)
    await first.stop()
    assert await _log(edge_redis, job) == []  # released to Kafka, written nowhere, and not settled

    second = _gate(kafka_bootstrap, group, ReplayWriter(redis_url, consumer=group))
    await _drain(second)
    await wait_committed(kafka_bootstrap, group, last)
    assert [t for _, t in await _log(edge_redis, job)] == ["started"] + ["token"] * len(PIECES) + ["completed"]
    texts = [f[b"data"] for _, f in await edge_redis.xrange(keys.replay_log(job))]
    assert b"".join(t for t in texts if b'"token"' in t).count(b"today?") == 1
